"""TrustSER: how trustworthy is a speech-emotion recogniser built on a frozen speech encoder?

Five axes — performance, privacy, safety, fairness, sustainability — measured from one
embedding cache per backbone. Submodules are imported lazily so ``import trustser`` stays cheap.
"""

from trustser._version import __version__

__all__ = ["__version__"]
