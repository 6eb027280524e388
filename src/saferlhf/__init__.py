"""saferlhf: helpful *and* harmless language models, and the measurements that show both."""

__version__ = "0.1.0"
