"""tl_lightning: TL-Training (MAE, PKT, IRM-PPO) for tool-using language models on PyTorch Lightning."""

__version__ = "0.1.0"
