"""medianalysed: a media-analysis daemon with a file-drop interface."""

__version__ = "0.4.0"
