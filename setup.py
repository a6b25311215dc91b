"""runferry: move ML experiment history (TensorBoard, MLflow) into Aim with Apache Beam pipelines."""
from setuptools import find_packages, setup

# Direct dependencies, pinned; constraints.txt pins everything beneath them (make uses both).
BEAM = 'apache-beam==2.77.0'  # keep equal to templates/*/Dockerfile and requirements.txt

setup(
    name='runferry',
    version='0.1.0',
    description='Batch pipelines that migrate TensorBoard logs and MLflow runs into Aim, losslessly.',
    packages=find_packages(include=['runmodel', 'connectors', 'transforms', 'pipelines', 'pipelines.*', 'samples']),
    python_requires='>=3.11,<3.12',
    install_requires=[
        BEAM,
        'aim==3.29.1',
        'mlflow==3.17.2',
        'tensorboard==2.21.0',
        'protobuf==6.33.6',
        'fsspec==2026.9.0',
        'crc32c==2.9.post0',
        'numpy==2.4.6',
        'pillow==12.3.0',
    ],
    extras_require={
        # google-cloud-storage: MLflow's gs:// artifact repository imports it (gcsfs needs it too)
        'gcs': ['gcsfs==2026.10.0', 'google-cloud-storage==3.17.1'],
        's3': ['s3fs==2026.9.0'],
        'samples': ['tensorboardX==2.6.5'],
        # SVG artifacts → aim.Image: rasterized to PNG by resvg (a Rust wheel, no system library)
        'svg': ['resvg-py==0.5.0'],
        # W&B runs (wandb_to_aim): the .wandb records are W&B's protobuf messages, whose generated classes
        # only this package ships (runferry imports wandb.proto alone: no W&B service, no network)
        'wandb': ['wandb==0.31.0'],
        'dev': [
            'resvg-py==0.5.0',
            'tensorboardX==2.6.5',
            'pytest==9.2.0',
            'pytest-timeout==2.4.0',
            'hypothesis==6.170.15',
            'moto[server]==5.2.5',
            'gcp-storage-emulator==2026.7.19',
            # real writers of the tests: PyTorch's SummaryWriter (a CPU wheel), Lightning's TensorBoardLogger
            'torch==2.13.0',
            'lightning==2.6.6',
            # Keras' TensorBoard callback and TF1/TF2 histograms written by TensorFlow itself
            'tensorflow-cpu==2.21.0',
            # postgresql:// tracking URIs in tests (SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3)
            'psycopg[binary]==3.3.9',
            # W&B's own writer of .wandb run files (offline mode) for the W&B source's tests, and its reader
            # for the bench; runferry reads .wandb files itself
            'wandb==0.31.0',
            # the layering contract (.importlinter), checked in make test
            'import-linter==2.17',
        ],
    },
)
