"""meldctl: multimodal emotion and sentiment recognition on MELD."""

__version__ = "0.1.0"
