"""Client for the HTTP API of squash, a serverless vector search engine::

    from squash_client import Client

    client = Client("http://127.0.0.1:9000/lambda-url/coordinator")
    result = client.query("glove-20k", vector, k=5, filter={"freq_rank": {"$lt": 5000}})
    print(result.ids, result.distances)

    written = client.upsert("glove-20k", [{"id": 20000, "vector": vector, "attributes": attrs}])
    client.fetch("glove-20k", [20000], min_token=written.token).rows

No dependencies: requests go through ``urllib.request``. NumPy arrays are accepted as vectors
but NumPy is not required.
"""

__version__ = "0.1.0"

from .client import Client  # noqa: E402
from .errors import (  # noqa: E402
    Conflict,
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
    FetchedRow,
    FetchResult,
    Hit,
    IndexSummary,
    QueryResult,
    SearchOptions,
    WriteResult,
)

__all__ = [
    "AttributeColumn",
    "BatchResult",
    "Client",
    "Conflict",
    "FetchResult",
    "FetchedRow",
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
    "WriteResult",
    "__version__",
]
