"""convd: the Python client of the convd daemon (2-D cross-correlation and kernel training over HTTP).

    >>> from convd import Client
    >>> c = Client("http://127.0.0.1:8080")
    >>> c.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
    array([[19., 25.], [37., 43.]], dtype=float32)
"""

from ._version import __version__
from .client import Client, Job
from .errors import (BadRequest, Busy, ConnectionFailed, Conflict, ConvdError, InvalidRequest, JobFailed, NotFound,
                     TooLarge, Unauthorized)
from .images import load_image, load_tensor, save_image, save_tensor

__all__ = ["__version__", "Client", "Job", "ConvdError", "ConnectionFailed", "BadRequest", "Unauthorized", "NotFound",
           "Conflict", "TooLarge", "InvalidRequest", "Busy", "JobFailed", "load_image", "save_image", "load_tensor",
           "save_tensor"]
