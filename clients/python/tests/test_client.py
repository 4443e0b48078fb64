"""Offline tests: the client against a scripted in-process HTTP server. They check the request
bodies the client sends, how answers are parsed and how error statuses map to exceptions."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import unittest

from squash_client import (
    BatchResult,
    Client,
    Conflict,
    FetchedRow,
    FetchResult,
    Hit,
    IndexSummary,
    InvalidRequest,
    NotFound,
    QueryResult,
    SearchOptions,
    ServerError,
    SquashError,
    TransportError,
    Unavailable,
    WriteResult,
)

from support import FakeService

try:
    import numpy
except ImportError:
    numpy = None

SUMMARY = {
    "name": "films",
    "index_version": "v-7",
    "created_unix_s": 1700000000,
    "metric": "cosine",
    "dim": 3,
    "num_vectors": 1000,
    "num_partitions": 4,
    "total_bytes": 123456,
    "bits_per_dim": 1.0,
    "attributes": [
        {"name": "year", "kind": "integer"},
        {"name": "genre", "kind": "categorical", "num_categories": 12},
    ],
    "added_later": True,
}

QUERY_ANSWER = {
    "hits": [
        {"id": 7, "distance": 0.125, "attributes": {"year": 2021, "genre": "drama"}},
        {"id": 3, "distance": 0.5},
    ],
    "partial": True,
    "missing_partitions": [2],
    "stats": {
        "partitions_probed": 3,
        "partitions_total": 4,
        "estimated_matches": 80,
        "scan": {"partition_vectors": 750},
        "execution": {"request_id": "req-1", "invocations": 2},
    },
}


WRITE_ANSWER = {"token": 4, "upserted": 2, "deleted_ids": 0, "deleted_by_filter": False}

FETCH_ANSWER = {
    "rows": [
        {"id": 7, "vector": [0.5, 1.5, -2.0], "attributes": {"year": 2021, "genre": "drama"}},
        {"id": 3, "attributes": {"year": 1999, "genre": "comedy"}},
    ],
    "missing": [8],
    "token": 4,
}


def batch_answer(num_queries: int) -> dict:
    return {
        "results": [
            {
                "hits": [{"id": i, "distance": 0.25 * i}],
                "partial": False,
                "stats": {"partitions_probed": 2, "partitions_total": 4},
            }
            for i in range(num_queries)
        ],
        "partial": False,
        "stats": {"request_id": "req-2", "invocations": 3, "total_ms": 12.5},
    }


class FakeArray:
    """Something shaped like a NumPy array: only ``tolist()``."""

    def __init__(self, rows):
        self.rows = rows

    def tolist(self):
        return self.rows


class ClientTestCase(unittest.TestCase):
    fake: FakeService

    @classmethod
    def setUpClass(cls) -> None:
        cls.fake = FakeService().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.fake.stop()

    def setUp(self) -> None:
        self.fake.reset()
        self.client = Client(self.fake.url + "/prefix/", timeout=5.0)


class RoutesTest(ClientTestCase):
    def test_health_sends_a_get_to_the_health_route(self) -> None:
        self.assertEqual(self.client.health(), {"status": "ok"})
        request = self.fake.last
        self.assertEqual((request.method, request.path), ("GET", "/prefix/health"))
        self.assertEqual(request.headers["accept"], "application/json")
        self.assertTrue(request.headers["user-agent"].startswith("squash-client/"))

    def test_list_indexes_returns_the_names(self) -> None:
        self.fake.reset((200, {"indexes": ["a", "glove-20k"]}, {}))
        self.assertEqual(self.client.list_indexes(), ["a", "glove-20k"])
        self.assertEqual(self.fake.last.path, "/prefix/v1/indexes")

    def test_describe_parses_the_summary_and_quotes_the_name(self) -> None:
        self.fake.reset((200, SUMMARY, {}))
        summary = self.client.describe("films/../x")
        self.assertEqual(self.fake.last.path, "/prefix/v1/indexes/films%2F..%2Fx")
        self.assertIsInstance(summary, IndexSummary)
        self.assertEqual((summary.name, summary.metric, summary.dim), ("films", "cosine", 3))
        self.assertEqual(summary.num_partitions, 4)
        self.assertEqual(summary.attributes[1].kind, "categorical")
        self.assertEqual(summary.attributes[1].num_categories, 12)
        self.assertIsNone(summary.attributes[0].num_categories)
        self.assertTrue(summary.raw["added_later"])

    def test_custom_headers_are_sent_and_override_defaults(self) -> None:
        client = Client(self.fake.url, headers={"x-api-key": "secret", "accept": "*/*"})
        client.health()
        self.assertEqual(self.fake.last.headers["x-api-key"], "secret")
        self.assertEqual(self.fake.last.headers["accept"], "*/*")

    def test_base_url_must_be_http(self) -> None:
        with self.assertRaises(ValueError):
            Client("127.0.0.1:9000")
        with self.assertRaises(ValueError):
            Client("ftp://example.com")


class QueryTest(ClientTestCase):
    def test_minimal_query_body(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        self.client.query("films", [1, 2.5, -3])
        request = self.fake.last
        self.assertEqual((request.method, request.path), ("POST", "/prefix/v1/indexes/films/query"))
        self.assertEqual(request.headers["content-type"], "application/json")
        self.assertEqual(request.json, {"vector": [1.0, 2.5, -3.0], "k": 10})

    def test_full_query_body(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        self.client.query(
            "films",
            (0.5, 0.25, 0.0),
            k=3,
            filter={"year": {"$gte": 2020}},
            include_attributes=True,
            options=SearchOptions(exact=True, rerank_factor=4),
            require_complete=True,
            branching=2,
        )
        self.assertEqual(
            self.fake.last.json,
            {
                "vector": [0.5, 0.25, 0.0],
                "k": 3,
                "filter": {"year": {"$gte": 2020}},
                "include_attributes": True,
                "options": {"exact": True, "rerank_factor": 4},
                "require_complete": True,
                "branching": 2,
            },
        )

    def test_min_token_is_sent_when_given(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        self.client.query("films", [1, 2, 3], min_token=4)
        self.assertEqual(self.fake.last.json, {"vector": [1.0, 2.0, 3.0], "k": 10, "min_token": 4})
        with self.assertRaises(ValueError):
            self.client.query("films", [1.0], min_token=-1)
        with self.assertRaises(TypeError):
            self.client.query("films", [1.0], min_token="4")
        self.assertEqual(len(self.fake.requests), 1)

    def test_options_may_be_a_mapping(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        self.client.query("films", [1, 2, 3], options={"centroid_factor": 2.0})
        self.assertEqual(self.fake.last.json["options"], {"centroid_factor": 2.0})

    def test_query_result_is_parsed(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        result = self.client.query("films", [1, 2, 3], k=2, include_attributes=True)
        self.assertIsInstance(result, QueryResult)
        self.assertEqual(
            result.hits[0], Hit(id=7, distance=0.125, attributes={"year": 2021, "genre": "drama"})
        )
        self.assertIsNone(result.hits[1].attributes)
        self.assertEqual(result.ids, [7, 3])
        self.assertEqual(result.distances, [0.125, 0.5])
        self.assertTrue(result.partial)
        self.assertEqual(result.missing_partitions, [2])
        self.assertEqual(result.stats["execution"]["invocations"], 2)

    def test_vectors_with_tolist_and_plain_iterables_are_accepted(self) -> None:
        self.fake.reset(default=(200, QUERY_ANSWER, {}))
        self.client.query("films", FakeArray([1.0, 2.0, 3.0]))
        self.assertEqual(self.fake.last.json["vector"], [1.0, 2.0, 3.0])
        self.client.query("films", (x / 2 for x in range(3)))
        self.assertEqual(self.fake.last.json["vector"], [0.0, 0.5, 1.0])

    def test_bad_vectors_and_k_are_refused_before_sending(self) -> None:
        cases = [
            (ValueError, "vector[2]", dict(vector=[1.0, 2.0, math.nan])),
            (ValueError, "vector[0]", dict(vector=[math.inf, 2.0])),
            (ValueError, "vector[1]", dict(vector=[1.0, -math.inf])),
            (ValueError, "at least one", dict(vector=[])),
            (TypeError, "vector[1]", dict(vector=[1.0, "2"])),
            (TypeError, "vector", dict(vector="1,2,3")),
            (TypeError, "vector", dict(vector=3.0)),
            (ValueError, "k must be a positive", dict(vector=[1.0], k=0)),
            (ValueError, "k must be a positive", dict(vector=[1.0], k=-5)),
            (TypeError, "k must be an integer", dict(vector=[1.0], k=2.0)),
            (TypeError, "k must be an integer", dict(vector=[1.0], k=True)),
            (TypeError, "filter", dict(vector=[1.0], filter="year > 3")),
        ]
        for error_type, text, kwargs in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(error_type) as caught:
                    self.client.query("films", **kwargs)
                self.assertIn(text, str(caught.exception))
        with self.assertRaises(ValueError):
            self.client.query("films", [1.0], filter={"x": {"$lt": math.nan}})
        with self.assertRaises(ValueError):
            self.client.query("", [1.0])
        self.assertEqual(self.fake.requests, [])


class BatchTest(ClientTestCase):
    def test_batch_body_with_one_filter_for_all(self) -> None:
        self.fake.reset((200, batch_answer(2), {}))
        self.client.query_batch(
            "films",
            [[1, 2], [3, 4]],
            k=5,
            filters={"year": {"$lt": 2000}},
            include_attributes=True,
            options=SearchOptions(hamming_keep=1.0),
            require_complete=True,
        )
        request = self.fake.last
        self.assertEqual(request.path, "/prefix/v1/indexes/films/query-batch")
        one = {
            "k": 5,
            "filter": {"year": {"$lt": 2000}},
            "include_attributes": True,
            "options": {"hamming_keep": 1.0},
        }
        self.assertEqual(
            request.json,
            {
                "queries": [dict(one, vector=[1.0, 2.0]), dict(one, vector=[3.0, 4.0])],
                "require_complete": True,
            },
        )

    def test_batch_body_with_a_filter_per_query(self) -> None:
        self.fake.reset((200, batch_answer(3), {}))
        self.client.query_batch(
            "films", FakeArray([[1, 0], [0, 1], [1, 1]]), filters=[None, {"a": 1}, None]
        )
        queries = self.fake.last.json["queries"]
        self.assertEqual(queries[0], {"vector": [1.0, 0.0], "k": 10})
        self.assertEqual(queries[1], {"vector": [0.0, 1.0], "k": 10, "filter": {"a": 1}})
        self.assertNotIn("filter", queries[2])
        self.assertNotIn("require_complete", self.fake.last.json)

    def test_as_of_is_sent_when_given_and_checked(self) -> None:
        self.fake.reset((200, QUERY_ANSWER, {}))
        self.client.query("films", [1.0], as_of=3)
        self.assertEqual(self.fake.last.json["as_of"], 3)
        self.fake.reset((200, batch_answer(1), {}))
        self.client.query_batch("films", [[1.0]], as_of=5)
        self.assertEqual(self.fake.last.json["as_of"], 5)
        self.assertNotIn("as_of", self.fake.last.json["queries"][0])
        with self.assertRaisesRegex(ValueError, "as_of must be >= 0"):
            self.client.query("films", [1.0], as_of=-1)
        with self.assertRaisesRegex(TypeError, "as_of must be an integer"):
            self.client.query("films", [1.0], as_of=True)

    def test_batch_min_token_applies_to_the_batch(self) -> None:
        self.fake.reset((200, batch_answer(2), {}))
        self.client.query_batch("films", [[1.0], [2.0]], min_token=7)
        body = self.fake.last.json
        self.assertEqual(body["min_token"], 7)
        self.assertNotIn("min_token", body["queries"][0])

    def test_batch_result_is_parsed(self) -> None:
        self.fake.reset((200, batch_answer(3), {}))
        result = self.client.query_batch("films", [[1.0], [2.0], [3.0]], k=1)
        self.assertIsInstance(result, BatchResult)
        self.assertEqual(len(result), 3)
        self.assertEqual([r.ids for r in result.results], [[0], [1], [2]])
        self.assertEqual(result[2].distances, [0.5])
        self.assertFalse(result.partial)
        self.assertEqual(result.stats["invocations"], 3)

    def test_bad_batches_are_refused_before_sending(self) -> None:
        cases = [
            (ValueError, "vectors[1][0]", dict(vectors=[[1.0], [math.nan]])),
            (ValueError, "vectors[1] has 1 components", dict(vectors=[[1.0, 2.0], [3.0]])),
            (ValueError, "at least one", dict(vectors=[])),
            (TypeError, "single vector", dict(vectors=[1.0, 2.0])),
            (TypeError, "vectors", dict(vectors=None)),
            (ValueError, "filters has 1 entries for 2", dict(vectors=[[1.0], [2.0]], filters=[{}])),
            (TypeError, "filters[1]", dict(vectors=[[1.0], [2.0]], filters=[None, 3])),
            (ValueError, "k must be a positive", dict(vectors=[[1.0]], k=0)),
        ]
        for error_type, text, kwargs in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(error_type) as caught:
                    self.client.query_batch("films", **kwargs)
                self.assertIn(text, str(caught.exception))
        self.assertEqual(self.fake.requests, [])


class WriteTest(ClientTestCase):
    def test_upsert_body_and_result(self) -> None:
        self.fake.reset((200, WRITE_ANSWER, {}))
        result = self.client.upsert(
            "films",
            [
                {"id": 7, "vector": (1, 2.5, -3), "attributes": {"year": 2021, "genre": "drama"}},
                (9, FakeArray([0.0, 1.0, 0.0]), {"year": 1999, "genre": "comedy"}),
                (11, [1.0, 1.0, 1.0]),
            ],
        )
        request = self.fake.last
        self.assertEqual(
            (request.method, request.path), ("POST", "/prefix/v1/indexes/films/upsert")
        )
        self.assertEqual(
            request.json,
            {
                "rows": [
                    {
                        "id": 7,
                        "vector": [1.0, 2.5, -3.0],
                        "attributes": {"year": 2021, "genre": "drama"},
                    },
                    {
                        "id": 9,
                        "vector": [0.0, 1.0, 0.0],
                        "attributes": {"year": 1999, "genre": "comedy"},
                    },
                    {"id": 11, "vector": [1.0, 1.0, 1.0]},
                ]
            },
        )
        self.assertEqual(
            result, WriteResult(token=4, upserted=2, deleted_ids=0, deleted_by_filter=False)
        )

    def test_bad_upserts_are_refused_before_sending(self) -> None:
        good = {"id": 1, "vector": [1.0], "attributes": {"year": 2000}}
        cases = [
            (ValueError, "rows must hold between 1", dict(rows=[])),
            (TypeError, "rows must be a sequence", dict(rows={"id": 1})),
            (ValueError, "rows[1].vector[0]", dict(rows=[good, (2, [math.nan])])),
            (ValueError, "rows[1].id: id 1 appears twice", dict(rows=[good, good])),
            (TypeError, "rows[0].id", dict(rows=[(True, [1.0])])),
            (TypeError, "rows[0].id", dict(rows=[("1", [1.0])])),
            (ValueError, "rows[0].id", dict(rows=[(-1, [1.0])])),
            (ValueError, "rows[0] has no 'vector'", dict(rows=[{"id": 1}])),
            (ValueError, "unknown key 'attrs'", dict(rows=[dict(good, attrs={})])),
            (TypeError, "rows[0].attributes", dict(rows=[(1, [1.0], [2000])])),
            (TypeError, "rows[0] must be a mapping", dict(rows=[(1,)])),
            (
                ValueError,
                "rows must hold between 1 and 10000",
                dict(rows=[(i, [1.0]) for i in range(10_001)]),
            ),
        ]
        for error_type, text, kwargs in cases:
            with self.subTest(text=text):
                with self.assertRaises(error_type) as caught:
                    self.client.upsert("films", **kwargs)
                self.assertIn(text, str(caught.exception))
        self.assertEqual(self.fake.requests, [])

    def test_delete_bodies(self) -> None:
        answer = {"token": 5, "upserted": 0, "deleted_ids": 2, "deleted_by_filter": True}
        self.fake.reset(default=(200, answer, {}))
        result = self.client.delete("films", ids=[3, 7], filter={"year": {"$lt": 2000}})
        request = self.fake.last
        self.assertEqual(request.path, "/prefix/v1/indexes/films/delete")
        self.assertEqual(request.json, {"ids": [3, 7], "filter": {"year": {"$lt": 2000}}})
        self.assertEqual((result.token, result.deleted_ids, result.deleted_by_filter), (5, 2, True))
        self.client.delete("films", ids=(i for i in (4,)))
        self.assertEqual(self.fake.last.json, {"ids": [4]})
        self.client.delete("films", filter={"genre": "drama"})
        self.assertEqual(self.fake.last.json, {"filter": {"genre": "drama"}})

    def test_bad_deletes_are_refused_before_sending(self) -> None:
        self.fake.reset()
        cases = [
            (ValueError, "name ids to delete, a filter, or both", dict()),
            (ValueError, "name ids to delete, a filter, or both", dict(ids=[])),
            (ValueError, "ids[2]: id 3 appears twice", dict(ids=[3, 4, 3])),
            (TypeError, "ids[0]", dict(ids=[1.5])),
            (TypeError, "ids must be a sequence", dict(ids=3)),
            (TypeError, "filter", dict(ids=[1], filter="year < 2000")),
        ]
        for error_type, text, kwargs in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(error_type) as caught:
                    self.client.delete("films", **kwargs)
                self.assertIn(text, str(caught.exception))
        self.assertEqual(self.fake.requests, [])

    def test_fetch_body_and_result(self) -> None:
        self.fake.reset((200, FETCH_ANSWER, {}), (200, FETCH_ANSWER, {}))
        result = self.client.fetch("films", [7, 3, 8])
        request = self.fake.last
        self.assertEqual(request.path, "/prefix/v1/indexes/films/fetch")
        self.assertEqual(request.json, {"ids": [7, 3, 8]})
        self.assertIsInstance(result, FetchResult)
        self.assertEqual(result.ids, [7, 3])
        self.assertEqual(len(result), 2)
        self.assertEqual(
            result[0],
            FetchedRow(id=7, attributes={"year": 2021, "genre": "drama"}, vector=[0.5, 1.5, -2.0]),
        )
        self.assertIsNone(result[1].vector)
        self.assertEqual((result.missing, result.token), ([8], 4))
        self.client.fetch("films", [7], include_vectors=False, min_token=4)
        self.assertEqual(
            self.fake.last.json, {"ids": [7], "include_vectors": False, "min_token": 4}
        )

    def test_bad_fetches_are_refused_before_sending(self) -> None:
        self.fake.reset()
        cases = [
            (ValueError, "ids must hold between 1", dict(ids=[])),
            (ValueError, "ids[1]: id 7 appears twice", dict(ids=[7, 7])),
            (ValueError, "min_token must be >= 0", dict(ids=[7], min_token=-2)),
            (TypeError, "ids must be a sequence", dict(ids="7")),
        ]
        for error_type, text, kwargs in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(error_type) as caught:
                    self.client.fetch("films", **kwargs)
                self.assertIn(text, str(caught.exception))
        self.assertEqual(self.fake.requests, [])

    def test_a_malformed_write_answer_is_a_server_error(self) -> None:
        self.fake.reset((200, {"upserted": 1}, {}), (200, {"rows": "nope"}, {}))
        with self.assertRaises(ServerError):
            self.client.upsert("films", [(1, [1.0])])
        with self.assertRaises(ServerError):
            self.client.fetch("films", [1])


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": dict({"code": code, "message": message}, **extra)}


class ErrorMappingTest(ClientTestCase):
    def test_400_is_invalid_request_with_the_field(self) -> None:
        self.fake.reset(
            (400, error_body("invalid_request", "vector: has 2 components", field="vector"), {})
        )
        with self.assertRaises(InvalidRequest) as caught:
            self.client.query("films", [1.0, 2.0])
        error = caught.exception
        self.assertIsInstance(error, SquashError)
        self.assertEqual(
            (error.status, error.code, error.field), (400, "invalid_request", "vector")
        )
        self.assertEqual(error.message, "vector: has 2 components")
        self.assertEqual(error.request_id, "req-test")
        self.assertEqual(str(error), "400 invalid_request: vector: has 2 components")

    def test_statuses_map_to_error_types(self) -> None:
        cases = [
            (405, "method_not_allowed", InvalidRequest),
            (413, "payload_too_large", InvalidRequest),
            (404, "not_found", NotFound),
            (409, "conflict", Conflict),
            (500, "internal", ServerError),
            (418, "teapot", ServerError),
        ]
        for status, code, error_type in cases:
            with self.subTest(status=status):
                self.fake.reset((status, error_body(code, "nope"), {}))
                with self.assertRaises(error_type) as caught:
                    self.client.describe("films")
                self.assertEqual((caught.exception.status, caught.exception.code), (status, code))
                self.assertIsNone(caught.exception.field)

    def test_503_carries_retry_after_and_missing_partitions(self) -> None:
        self.fake.reset(
            (
                503,
                error_body("incomplete", "retry later", missing_partitions=[1, 3], retry_after_s=1),
                {"retry-after": "1"},
            )
        )
        with self.assertRaises(Unavailable) as caught:
            self.client.query("films", [1.0], require_complete=True)
        self.assertEqual(caught.exception.code, "incomplete")
        self.assertEqual(caught.exception.missing_partitions, [1, 3])
        self.assertEqual(caught.exception.retry_after_s, 1)
        self.assertEqual(len(self.fake.requests), 1)

    def test_503_without_retry_after_in_the_body_uses_the_header(self) -> None:
        self.fake.reset((503, error_body("unavailable", "storage"), {"retry-after": "2"}))
        with self.assertRaises(Unavailable) as caught:
            self.client.list_indexes()
        self.assertEqual(caught.exception.retry_after_s, 2.0)
        self.assertEqual(caught.exception.missing_partitions, [])

    def test_a_non_json_error_page_keeps_its_text(self) -> None:
        self.fake.reset((502, b"<html>Bad Gateway</html>", {}))
        with self.assertRaises(ServerError) as caught:
            self.client.health()
        self.assertEqual((caught.exception.status, caught.exception.code), (502, "http_502"))
        self.assertIn("Bad Gateway", caught.exception.message)
        self.assertIsNone(caught.exception.body)

    def test_a_malformed_success_is_a_server_error(self) -> None:
        self.fake.reset((200, b"not json", {}))
        with self.assertRaises(ServerError) as caught:
            self.client.health()
        self.assertEqual(caught.exception.code, "bad_response")
        self.fake.reset((200, {"hits": "nope"}, {}))
        with self.assertRaises(ServerError):
            self.client.query("films", [1.0])
        self.fake.reset((200, {"unexpected": []}, {}))
        with self.assertRaises(ServerError):
            self.client.list_indexes()


class RetryTest(ClientTestCase):
    UNAVAILABLE = (503, error_body("incomplete", "later", retry_after_s=0), {})

    def test_503_is_retried_when_asked(self) -> None:
        self.fake.reset(self.UNAVAILABLE, self.UNAVAILABLE, (200, QUERY_ANSWER, {}))
        client = Client(self.fake.url, retries=2)
        self.assertEqual(client.query("films", [1.0]).ids, [7, 3])
        self.assertEqual(len(self.fake.requests), 3)
        bodies = {request.raw for request in self.fake.requests}
        self.assertEqual(len(bodies), 1)

    def test_a_write_is_retried_with_the_same_body(self) -> None:
        throttled = (503, error_body("unavailable", "compact it", retry_after_s=0), {})
        self.fake.reset(throttled, (200, WRITE_ANSWER, {}))
        client = Client(self.fake.url, retries=1)
        self.assertEqual(client.upsert("films", [(1, [1.0])]).token, 4)
        self.assertEqual(len(self.fake.requests), 2)
        self.assertEqual(self.fake.requests[0].raw, self.fake.requests[1].raw)

    def test_retries_give_up_with_the_last_error(self) -> None:
        self.fake.reset(default=self.UNAVAILABLE)
        with self.assertRaises(Unavailable):
            Client(self.fake.url, retries=1).query("films", [1.0])
        self.assertEqual(len(self.fake.requests), 2)

    def test_other_errors_are_not_retried(self) -> None:
        self.fake.reset(default=(500, error_body("internal", "corrupt"), {}))
        with self.assertRaises(ServerError):
            Client(self.fake.url, retries=3).health()
        self.assertEqual(len(self.fake.requests), 1)


class TransportTest(ClientTestCase):
    def test_a_closed_port_is_a_transport_error(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with self.assertRaises(TransportError) as caught:
            Client(f"http://127.0.0.1:{port}", timeout=2.0).health()
        self.assertIsNone(caught.exception.status)
        self.assertIsInstance(caught.exception, SquashError)

    def test_a_slow_answer_is_a_timeout(self) -> None:
        self.fake.reset()
        self.fake.delay_s = 1.0
        with self.assertRaises(TransportError) as caught:
            Client(self.fake.url, timeout=0.2).health()
        self.assertEqual(caught.exception.code, "timeout")


class NumpyFreeTest(unittest.TestCase):
    def test_importing_and_validating_does_not_import_numpy(self) -> None:
        script = (
            "import sys, squash_client\n"
            "client = squash_client.Client('http://127.0.0.1:9')\n"
            "try:\n"
            "    client.query('x', [1.0, float('nan')])\n"
            "except ValueError:\n"
            "    pass\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        )
        env = dict(os.environ)
        src = os.path.join(os.path.dirname(__file__), "..", "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
        completed = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)


@unittest.skipIf(numpy is None, "numpy is not installed (optional)")
class NumpyInputTest(ClientTestCase):
    def test_numpy_vectors_and_matrices_are_accepted(self) -> None:
        self.fake.reset(default=(200, QUERY_ANSWER, {}))
        self.client.query(
            "films", numpy.array([0.5, 1.5, -2.0], dtype=numpy.float32), k=numpy.int64(4)
        )
        self.assertEqual(self.fake.last.json, {"vector": [0.5, 1.5, -2.0], "k": 4})
        self.fake.reset((200, batch_answer(2), {}))
        self.client.query_batch("films", numpy.arange(6, dtype=numpy.float64).reshape(2, 3))
        vectors = [query["vector"] for query in self.fake.last.json["queries"]]
        self.assertEqual(vectors, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
        self.fake.reset((200, batch_answer(2), {}))
        self.client.query_batch("films", [numpy.ones(2, dtype=numpy.float32)] * 2)
        self.assertEqual(self.fake.last.json["queries"][1]["vector"], [1.0, 1.0])

    def test_numpy_nan_and_shape_errors(self) -> None:
        self.fake.reset()
        with self.assertRaises(ValueError) as caught:
            self.client.query("films", numpy.array([1.0, numpy.nan], dtype=numpy.float32))
        self.assertIn("vector[1]", str(caught.exception))
        matrix = numpy.zeros((2, 3))
        matrix[1, 2] = numpy.inf
        with self.assertRaises(ValueError) as caught:
            self.client.query_batch("films", matrix)
        self.assertIn("vectors[1][2]", str(caught.exception))
        with self.assertRaises(TypeError):
            self.client.query_batch("films", numpy.zeros(3))
        self.assertEqual(self.fake.requests, [])


if __name__ == "__main__":
    unittest.main()
