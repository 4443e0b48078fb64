"""Client for the HTTP API of squash, a serverless vector search engine::

    from squash_client import Client

    client = Client("http://127.0.0.1:9000/lambda-url/coordinator")
    result = client.query("glove-20k", vector, k=5, filter={"freq_rank": {"$lt": 5000}})
    print(result.ids, result.distances)

No dependencies: requests go through ``urllib.request``. NumPy arrays are accepted as vectors
but NumPy is not required.
"""

__version__ = "0.1.0"

from .client import Client  # noqa: E402
from .errors import (  # noqa: E402
    InvalidRequest,
    NotFound,
    ServerError,
    SquashError,
    TransportError,
    Unavailable,
)
from .models import (  # noqa: E402
    AttributeColumn,
    BatchResult,
    Hit,
    IndexSummary,
    QueryResult,
    SearchOptions,
)

__all__ = [
    "AttributeColumn",
    "BatchResult",
    "Client",
    "Hit",
    "IndexSummary",
    "InvalidRequest",
    "NotFound",
    "QueryResult",
    "SearchOptions",
    "ServerError",
    "SquashError",
    "TransportError",
    "Unavailable",
    "__version__",
]
