"""Tests of the benchmark's data reading, predicate evaluation and recall scoring.

Run: .venv-bench/bin/python -m unittest discover -s scripts/bench
"""

import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from benchdata import load_dataset, predicate_mask, predicate_sql, read_vecs, recall_at_k  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "glove-20k")


def write_vecs(path, rows, fmt):
    with open(path, "wb") as f:
        for row in rows:
            f.write(struct.pack("<i", len(row)))
            f.write(struct.pack(f"<{len(row)}{fmt}", *row))


class ReadVecsTest(unittest.TestCase):
    def test_reads_each_element_type(self):
        with tempfile.TemporaryDirectory() as folder:
            write_vecs(os.path.join(folder, "a.fvecs"), [[1.5, -2.0], [3.0, 4.25]], "f")
            write_vecs(os.path.join(folder, "a.ivecs"), [[7, -1, 3]], "i")
            write_vecs(os.path.join(folder, "a.bvecs"), [[0, 255, 9], [1, 2, 3]], "B")
            np.testing.assert_array_equal(
                read_vecs(os.path.join(folder, "a.fvecs")), np.array([[1.5, -2.0], [3.0, 4.25]], np.float32)
            )
            np.testing.assert_array_equal(read_vecs(os.path.join(folder, "a.ivecs")), [[7, -1, 3]])
            bvecs = read_vecs(os.path.join(folder, "a.bvecs"))
            self.assertEqual(bvecs.dtype, np.uint8)
            np.testing.assert_array_equal(bvecs, [[0, 255, 9], [1, 2, 3]])

    def test_refuses_rows_of_other_dimensions(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "bad.ivecs")
            with open(path, "wb") as f:
                f.write(struct.pack("<iii", 2, 1, 2))
                f.write(struct.pack("<ii", 1, 5))
                f.write(struct.pack("<i", 0))
            with self.assertRaises(ValueError):
                read_vecs(path)


class PredicateTest(unittest.TestCase):
    attrs = {"rank": np.array([0, 5, 10, 15, 20]), "label": np.array([1, 2, 1, 3, 2])}

    def test_mask_ands_every_clause(self):
        predicate = [
            {"attr": "rank", "op": "between", "lo": 5, "hi": 20},
            {"attr": "label", "op": "in", "values": [1, 2]},
        ]
        np.testing.assert_array_equal(predicate_mask(self.attrs, predicate), [False, True, True, False, True])
        np.testing.assert_array_equal(
            predicate_mask(self.attrs, [{"attr": "label", "op": "eq", "value": 2}]), [False, True, False, False, True]
        )
        np.testing.assert_array_equal(
            predicate_mask(self.attrs, [{"attr": "rank", "op": "ge", "value": 15}]), [False, False, False, True, True]
        )
        np.testing.assert_array_equal(
            predicate_mask(self.attrs, [{"attr": "rank", "op": "le", "value": 5}]), [True, True, False, False, False]
        )
        self.assertIsNone(predicate_mask(self.attrs, []))

    def test_sql_says_the_same(self):
        predicate = [
            {"attr": "rank", "op": "between", "lo": 5, "hi": 20},
            {"attr": "label", "op": "in", "values": [1, 2]},
            {"attr": "initial_class", "op": "eq", "value": "o'k"},
            {"attr": "rank", "op": "le", "value": 9},
        ]
        self.assertEqual(
            predicate_sql(predicate),
            "rank BETWEEN 5 AND 20 AND label IN (1, 2) AND initial_class = 'o''k' AND rank <= 9",
        )
        self.assertIsNone(predicate_sql([]))
        with self.assertRaises(ValueError):
            predicate_sql([{"attr": "a; DROP", "op": "eq", "value": 1}])
        with self.assertRaises(ValueError):
            predicate_mask(self.attrs, [{"attr": "rank", "op": "ne", "value": 1}])


class RecallTest(unittest.TestCase):
    # Four unit vectors; the query is closest to row 0, then 1, then 2, then 3.
    base = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    query = np.array([1.0, 0.0], dtype=np.float32)
    gt_ip = np.array([1.0, 0.8, 0.0, -1.0], dtype=np.float32)

    def recall(self, ids, k=2, mask=None, gt=None):
        return recall_at_k("ip", self.base, self.query, np.array(ids), self.gt_ip if gt is None else gt, mask, k=k)

    def test_scores_by_distance_each_id_once(self):
        self.assertEqual(self.recall([0, 1]), 1.0)
        self.assertEqual(self.recall([1, 0]), 1.0)
        self.assertEqual(self.recall([0, 2]), 0.5)
        self.assertEqual(self.recall([0, 0]), 0.5)
        self.assertEqual(self.recall([-1, -1]), 0.0)
        self.assertEqual(self.recall([]), 0.0)

    def test_a_tie_at_the_kth_distance_counts(self):
        base = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=np.float32)
        gt = np.array([1.0, 0.0, 0.0], dtype=np.float32)
        self.assertEqual(recall_at_k("ip", base, self.query, np.array([0, 2]), gt, None, k=2), 1.0)

    def test_rows_failing_the_filter_never_count(self):
        mask = np.array([False, True, True, True])
        gt = np.array([0.8, 0.0, -1.0, -1.0], dtype=np.float32)
        self.assertEqual(self.recall([0, 1], mask=mask, gt=gt), 0.5)
        self.assertEqual(self.recall([1, 2], mask=mask, gt=gt), 1.0)

    def test_fewer_matches_than_k_lowers_k(self):
        mask = np.array([False, False, True, False])
        gt = np.array([0.0, -3e38, -3e38], dtype=np.float32)  # padded like the committed sample
        self.assertEqual(self.recall([2], k=3, mask=mask, gt=gt), 1.0)
        self.assertEqual(self.recall([3], k=3, mask=mask, gt=gt), 0.0)

    def test_l2_uses_squared_distances(self):
        base = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], dtype=np.float32)
        gt = np.array([0.0, 25.0, 100.0], dtype=np.float32)
        query = np.zeros(2, dtype=np.float32)
        self.assertEqual(recall_at_k("l2", base, query, np.array([1, 0]), gt, None, k=2), 1.0)
        self.assertEqual(recall_at_k("l2", base, query, np.array([2, 0]), gt, None, k=2), 0.5)


@unittest.skipUnless(os.path.isdir(SAMPLE), "the committed sample is not there")
class SampleTest(unittest.TestCase):
    def test_ground_truth_scores_one_and_passes_its_filters(self):
        dataset = load_dataset(SAMPLE, max_queries=20)
        self.assertEqual(dataset.name, "glove-20k")
        self.assertEqual(dataset.metric, "ip")
        self.assertTrue(dataset.workloads)
        for workload in dataset.workloads:
            for position in range(len(workload.query_ids)):
                mask = predicate_mask(dataset.attrs, workload.predicates[position])
                ids = workload.gt_ids[position][:10]
                ids = ids[ids >= 0]
                if mask is not None:
                    self.assertTrue(mask[ids].all(), workload.name)
                query = dataset.queries[workload.query_ids[position]]
                recall = recall_at_k(dataset.metric, dataset.base, query, ids, workload.gt_dist[position], mask)
                self.assertEqual(recall, 1.0, workload.name)


if __name__ == "__main__":
    unittest.main()
