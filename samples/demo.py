"""Write the demo logdir: a small TensorBoard hierarchy from real writers (tensorboardX and TF2-style):
scalars in runs, groups and contexts, and a run that logs every other plugin (images, histograms,
text, audio, hparams, and PR curves, which Aim has no type for and the report lists as skipped)."""
import os
import sys

from samples.tensorboard_logs import write_seed_logdir, write_tf2
from samples.tensorboard_plugins import write_tbx_plugins, write_tf2_plugins


def main(root: str) -> None:
    write_seed_logdir(root, steps=200)
    write_tf2(os.path.join(root, 'tf2_run'), ('loss', 'learning_rate'), 200)
    write_tbx_plugins(os.path.join(root, 'plugins_tbx'), steps=5)
    write_tf2_plugins(os.path.join(root, 'plugins_tf2'), steps=5)
    print(f'wrote a sample TensorBoard logdir to {root}')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'demo-logs')
