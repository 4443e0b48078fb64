"""Live tests against a running deployment serving the committed `glove-20k` sample.

They run only when SQUASH_API is set (``eval "$(scripts/local-stack.sh env)"`` after
``scripts/local-stack.sh up`` sets it to the local stack's coordinator URL).
"""

from __future__ import annotations

import os
import unittest

from squash_client import Client, InvalidRequest, NotFound, SearchOptions, SquashError

from support import REPO_ROOT, read_fvecs, read_ivecs

API = os.environ.get("SQUASH_API")
INDEX = "glove-20k"
SAMPLE = os.path.join(REPO_ROOT, "tests", "data", "glove-20k")


@unittest.skipUnless(API, "SQUASH_API is not set: live tests against a deployment skipped")
class LiveTest(unittest.TestCase):
    client: Client
    queries: list

    @classmethod
    def setUpClass(cls) -> None:
        # Retries absorb a 503 from a cold stack; the local functions may take seconds to start.
        cls.client = Client(API, timeout=60.0, retries=3)
        cls.queries = read_fvecs(os.path.join(SAMPLE, "queries.fvecs"), limit=3)

    def test_health(self) -> None:
        self.assertEqual(self.client.health().get("status"), "ok")

    def test_list_and_describe(self) -> None:
        self.assertIn(INDEX, self.client.list_indexes())
        summary = self.client.describe(INDEX)
        self.assertEqual((summary.name, summary.metric, summary.dim), (INDEX, "cosine", 50))
        self.assertEqual(summary.num_vectors, 20_000)
        self.assertGreaterEqual(summary.num_partitions, 1)
        kinds = {column.name: column.kind for column in summary.attributes}
        self.assertEqual(kinds.get("freq_rank"), "integer")
        self.assertEqual(kinds.get("initial_class"), "categorical")

    def test_filtered_query_with_attributes(self) -> None:
        result = self.client.query(
            INDEX,
            self.queries[0],
            k=10,
            filter={"freq_rank": {"$lt": 5000}},
            include_attributes=True,
            require_complete=True,
        )
        self.assertEqual(len(result.hits), 10)
        self.assertFalse(result.partial)
        for hit in result.hits:
            self.assertIsNotNone(hit.attributes)
            self.assertLess(hit.attributes["freq_rank"], 5000)
        self.assertEqual(result.distances, sorted(result.distances))
        self.assertEqual(len(set(result.ids)), 10)
        self.assertIn("execution", result.stats)

    def test_exact_query_matches_the_ground_truth(self) -> None:
        truth = read_ivecs(os.path.join(SAMPLE, "gt", "unfiltered.ivecs"), limit=1)[0][:10]
        result = self.client.query(
            INDEX, self.queries[0], k=10, options=SearchOptions(exact=True), require_complete=True
        )
        # Float32 rounding may swap a near tie at the boundary, hence 9 of 10.
        self.assertGreaterEqual(len(set(result.ids) & set(truth)), 9)

    def test_batch_of_three(self) -> None:
        result = self.client.query_batch(
            INDEX,
            self.queries,
            k=5,
            filters=[None, {"freq_rank": {"$lt": 5000}}, {"initial_class": {"$eq": "s"}}],
            include_attributes=True,
            require_complete=True,
        )
        self.assertEqual(len(result.results), 3)
        self.assertFalse(result.partial)
        for one in result.results:
            self.assertEqual(len(one.hits), 5)
        self.assertTrue(all(h.attributes["freq_rank"] < 5000 for h in result[1].hits))
        self.assertTrue(all(h.attributes["initial_class"] == "s" for h in result[2].hits))
        self.assertGreaterEqual(result.stats.get("invocations", 0), 1)

    def test_unknown_index_is_not_found(self) -> None:
        with self.assertRaises(NotFound) as caught:
            self.client.query("no-such-index-here", self.queries[0], k=3)
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))
        with self.assertRaises(NotFound):
            self.client.describe("no-such-index-here")

    def test_wrong_dimension_is_an_invalid_request_naming_the_vector(self) -> None:
        with self.assertRaises(InvalidRequest) as caught:
            self.client.query(INDEX, self.queries[0][:49], k=3)
        error = caught.exception
        self.assertEqual(
            (error.status, error.code, error.field), (400, "invalid_request", "vector")
        )
        self.assertIn("dimension 50", error.message)

    def test_server_side_validation_of_options(self) -> None:
        with self.assertRaises(InvalidRequest) as caught:
            self.client.query(INDEX, self.queries[0], options={"hamming_keep": 0.0})
        self.assertEqual(caught.exception.field, "options.hamming_keep")
        with self.assertRaises(SquashError):
            self.client.query(INDEX, self.queries[0], k=10_001)


if __name__ == "__main__":
    unittest.main()
