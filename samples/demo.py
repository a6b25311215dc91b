"""Write the demo logdir: a small TensorBoard hierarchy from real writers (tensorboardX and TF2-style)."""
import os
import sys

from samples.tensorboard_logs import write_seed_logdir, write_tf2


def main(root: str) -> None:
    write_seed_logdir(root, steps=200)
    write_tf2(os.path.join(root, 'tf2_run'), ('loss', 'learning_rate'), 200)
    print(f'wrote a sample TensorBoard logdir to {root}')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'demo-logs')
