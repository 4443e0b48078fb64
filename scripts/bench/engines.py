"""The peer engines the benchmark measures squash against, behind one small interface.

Each engine builds its index over a data set once, names its search settings, turns a query's
predicate into the filter object its users would build (`make_filter`), and answers one query
at a time (`search`, ids best first). The caller times `make_filter` + `search` per query and
confines the queries to one core (see peers.py); builds may use `threads` threads.
"""

import math
import os
import shutil
import time

import numpy as np

from benchdata import predicate_mask, predicate_sql

K = 10


def _file_size(path):
    return os.path.getsize(path)


def _tree_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


class Engine:
    """Base class: subclasses set `name` and implement build/settings/make_filter/search."""

    name = ""
    # True when make_filter's time is not part of the measured query time (references only).
    untimed_filters = False
    # Set by build(): wall seconds of the build and bytes of the serialised index.
    build_seconds = None
    index_bytes = None

    def build(self, dataset, workdir, threads):
        raise NotImplementedError

    def settings(self, quick):
        """Returns [(label, params)], cheapest first."""
        raise NotImplementedError

    def make_filter(self, predicate):
        """Returns the filter object for one query's predicate (None for an empty predicate)."""
        raise NotImplementedError

    def search(self, query, filt, params):
        """Returns up to K ids, best first; `query` is a (1, dim) float32 array."""
        raise NotImplementedError

    def close(self):
        pass


class _MaskFilterMixin:
    """Filters for in-memory engines start from the row mask of the predicate."""

    def _mask(self, predicate):
        return predicate_mask(self.dataset.attrs, predicate)


class FaissIvfFlat(_MaskFilterMixin, Engine):
    """FAISS IndexIVFFlat (nlist = 4 sqrt(n)), filtered with IDSelectorBitmap, sweeping nprobe."""

    name = "faiss-ivf-flat"

    def build(self, dataset, workdir, threads):
        import faiss

        self.faiss = faiss
        self.dataset = dataset
        metric = faiss.METRIC_INNER_PRODUCT if dataset.metric == "ip" else faiss.METRIC_L2
        self.nlist = max(1, int(round(4 * math.sqrt(dataset.num_base))))
        started = time.perf_counter()
        quantizer = faiss.IndexFlat(dataset.dim, metric)
        index = faiss.IndexIVFFlat(quantizer, dataset.dim, self.nlist, metric)
        index.cp.verbose = False
        index.train(dataset.base)
        index.add(dataset.base)
        self.build_seconds = time.perf_counter() - started
        self.quantizer = quantizer  # the index does not own it
        self.index = index
        path = os.path.join(workdir, "faiss-ivf-flat.index")
        faiss.write_index(index, path)
        self.index_bytes = _file_size(path)
        os.remove(path)

    def settings(self, quick):
        probes = [4, 32] if quick else [2, 4, 8, 16, 32, 64, 128]
        return [(f"nprobe={p}", p) for p in probes if p <= self.nlist]

    def make_filter(self, predicate):
        mask = self._mask(predicate)
        if mask is None:
            return None
        return self.faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))

    def search(self, query, filt, params):
        if filt is None:
            search_params = self.faiss.SearchParametersIVF(nprobe=params)
        else:
            search_params = self.faiss.SearchParametersIVF(sel=filt, nprobe=params)
        _distances, ids = self.index.search(query, K, params=search_params)
        return ids[0]


class FaissHnsw(_MaskFilterMixin, Engine):
    """FAISS IndexHNSWFlat (M = 32), filtered with IDSelectorBitmap, sweeping efSearch."""

    name = "faiss-hnsw"
    M = 32
    EF_CONSTRUCTION = 64

    def build(self, dataset, workdir, threads):
        import faiss

        self.faiss = faiss
        self.dataset = dataset
        metric = faiss.METRIC_INNER_PRODUCT if dataset.metric == "ip" else faiss.METRIC_L2
        started = time.perf_counter()
        index = faiss.IndexHNSWFlat(dataset.dim, self.M, metric)
        index.hnsw.efConstruction = self.EF_CONSTRUCTION
        index.add(dataset.base)
        self.build_seconds = time.perf_counter() - started
        self.index = index
        path = os.path.join(workdir, "faiss-hnsw.index")
        faiss.write_index(index, path)
        self.index_bytes = _file_size(path)
        os.remove(path)

    def settings(self, quick):
        # FAISS fills efSearch with visited rows whether they pass the filter or not, so filtered
        # recall needs a larger efSearch than hnswlib's ef (which counts passing rows only).
        efs = [32, 128] if quick else [16, 32, 64, 128, 256, 512, 1024]
        return [(f"efSearch={ef}", ef) for ef in efs]

    def make_filter(self, predicate):
        mask = self._mask(predicate)
        if mask is None:
            return None
        return self.faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))

    def search(self, query, filt, params):
        if filt is None:
            search_params = self.faiss.SearchParametersHNSW(efSearch=params)
        else:
            search_params = self.faiss.SearchParametersHNSW(sel=filt, efSearch=params)
        _distances, ids = self.index.search(query, K, params=search_params)
        return ids[0]


class Hnswlib(_MaskFilterMixin, Engine):
    """hnswlib (M = 16, ef_construction = 100), filtered with its per-label Python callback, sweeping ef."""

    name = "hnswlib"
    M = 16
    EF_CONSTRUCTION = 100

    def build(self, dataset, workdir, threads):
        import hnswlib

        self.dataset = dataset
        space = "ip" if dataset.metric == "ip" else "l2"
        started = time.perf_counter()
        index = hnswlib.Index(space=space, dim=dataset.dim)
        index.init_index(
            max_elements=dataset.num_base, ef_construction=self.EF_CONSTRUCTION, M=self.M, random_seed=100
        )
        index.add_items(dataset.base, np.arange(dataset.num_base), num_threads=threads)
        index.set_num_threads(1)
        self.build_seconds = time.perf_counter() - started
        self.index = index
        path = os.path.join(workdir, "hnswlib.index")
        index.save_index(path)
        self.index_bytes = _file_size(path)
        os.remove(path)
        self.failed_queries = 0

    def settings(self, quick):
        efs = [32, 128] if quick else [16, 32, 64, 128, 256, 512]
        return [(f"ef={ef}", ef) for ef in efs]

    def make_filter(self, predicate):
        mask = self._mask(predicate)
        if mask is None:
            return None
        # hnswlib calls this once per visited label; a bound C method is the cheapest callable.
        return mask.__getitem__

    def search(self, query, filt, params):
        if self.index.ef != params:
            self.index.set_ef(params)
        try:
            ids, _distances = self.index.knn_query(query, k=K, num_threads=1, filter=filt)
        except RuntimeError:
            # hnswlib refuses to return fewer than k hits ("contiguous 2D array"): an empty answer.
            self.failed_queries += 1
            return np.empty(0, dtype=np.int64)
        return ids[0]


class LanceDbIvfPq(Engine):
    """LanceDB IVF-PQ (sqrt(n) partitions), SQL pre-filter over scalar-indexed columns, sweeping nprobes."""

    name = "lancedb-ivf-pq"
    REFINE_FACTOR = 10
    KMEANS_ITERATIONS = 10

    def build(self, dataset, workdir, threads):
        import lancedb
        import pyarrow as pa
        from lancedb.index import BTree, Bitmap, IvfPq

        self.dataset = dataset
        self.path = os.path.join(workdir, "lancedb")
        shutil.rmtree(self.path, ignore_errors=True)
        self.distance_type = "dot" if dataset.metric == "ip" else "l2"
        self.num_partitions = max(1, int(round(math.sqrt(dataset.num_base))))
        # 8-bit PQ codes of 8 dimensions (LanceDB's default for 784-d Fashion-MNIST). GloVe's 50
        # dimensions do not split into 8s or 16s; 2-d codes (25 sub-vectors) keep recall reachable
        # with refine_factor 10, where 5-d codes stop near 0.8 (measured).
        code_width = next(width for width in (8, 2, 1) if dataset.dim % width == 0)
        self.num_sub_vectors = dataset.dim // code_width
        started = time.perf_counter()
        columns = {
            "id": pa.array(np.arange(dataset.num_base, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(dataset.base.ravel()), dataset.dim),
        }
        for name, values in dataset.attrs.items():
            if name != "id":
                columns[name] = pa.array(values)
        db = lancedb.connect(self.path)
        table = db.create_table("base", pa.table(columns))
        table.create_index(
            "vector",
            config=IvfPq(
                distance_type=self.distance_type,
                num_partitions=self.num_partitions,
                num_sub_vectors=self.num_sub_vectors,
                # LanceDB's default of 50 k-means iterations made the build of Fashion-MNIST cost
                # minutes of CPU (mostly the 98 PQ codebooks); 10 is FAISS's IVF default and cut
                # it 4x on a 20k slice.
                max_iterations=self.KMEANS_ITERATIONS,
            ),
        )
        for name, values in dataset.attrs.items():
            if name == "id":
                continue
            # LanceDB recommends bitmap indexes for low-cardinality columns, B-trees otherwise.
            config = Bitmap() if len(np.unique(values)) <= 1000 else BTree()
            table.create_index(name, config=config)
        self.build_seconds = time.perf_counter() - started
        self.db = db
        self.table = table
        self.index_bytes = _tree_size(self.path)

    def settings(self, quick):
        # LanceDB answers ~100-200 queries/s at best (a query plan per query), so its sweep is short.
        probes = [4, 32] if quick else [8, 32, 128]
        return [(f"nprobes={p},refine_factor={self.REFINE_FACTOR}", p) for p in probes if p <= self.num_partitions]

    def make_filter(self, predicate):
        return predicate_sql(predicate)

    def search(self, query, filt, params):
        builder = (
            self.table.search(query[0], vector_column_name="vector")
            .distance_type(self.distance_type)
            .nprobes(params)
            .refine_factor(self.REFINE_FACTOR)
            .select(["id", "_distance"])
            .limit(K)
        )
        if filt is not None:
            builder = builder.where(filt, prefilter=True)
        return builder.to_arrow().column("id").to_numpy()

    def close(self):
        self.table = None
        self.db = None
        shutil.rmtree(self.path, ignore_errors=True)


class BruteForce(_MaskFilterMixin, Engine):
    """Exact search with numpy over the rows that pass: the floor every engine should beat.

    The float32 scan keeps the best 64 rows, which are re-ranked in float64 so rounding never
    reorders near ties (Fashion-MNIST's integer distances overflow float32's exact range).
    """

    name = "brute-force"
    SCREEN = 64

    def build(self, dataset, workdir, threads):
        self.dataset = dataset
        self.base = dataset.base
        self.ip = dataset.metric == "ip"
        self.norms = None if self.ip else np.einsum("ij,ij->i", self.base, self.base)
        self.build_seconds = None
        self.index_bytes = int(self.base.nbytes)

    def settings(self, quick):
        return [("exact", None)]

    def make_filter(self, predicate):
        mask = self._mask(predicate)
        return None if mask is None else np.flatnonzero(mask)

    def search(self, query, filt, params):
        q = query[0]
        rows = self.base if filt is None else self.base[filt]
        norms = None if self.ip else (self.norms if filt is None else self.norms[filt])
        picked = self._top_k(q, rows, norms)
        return picked if filt is None else filt[picked]

    def _top_k(self, q, rows, norms):
        """Returns the positions in `rows` of the K nearest to `q`, best first."""
        scores = -(rows @ q) if self.ip else norms - 2.0 * (rows @ q)
        screen = min(self.SCREEN, scores.shape[0])
        if screen < scores.shape[0]:
            best = np.argpartition(scores, screen - 1)[:screen]
        else:
            best = np.arange(scores.shape[0])
        exact_rows = rows[best].astype(np.float64)
        q64 = q.astype(np.float64)
        if self.ip:
            exact = -(exact_rows @ q64)
        else:
            diff = exact_rows - q64
            exact = np.einsum("ij,ij->i", diff, diff)
        order = np.lexsort((best, exact))[:K]
        return best[order]


class MatchingRows(BruteForce):
    """A reference, not an engine: numpy computing the distances of only the rows that pass.

    The passing rows are gathered into one contiguous array (with their norms) by make_filter,
    which is not timed (`untimed_filters`), so the timed work is the least an exact answer needs:
    one distance per matching row and the top-k. `squash bench` never shows it in bold.
    """

    name = "matching-rows"
    untimed_filters = True

    def make_filter(self, predicate):
        mask = self._mask(predicate)
        if mask is None:
            return None
        rows_ids = np.flatnonzero(mask)
        rows = np.ascontiguousarray(self.base[rows_ids])
        norms = None if self.ip else np.ascontiguousarray(self.norms[rows_ids])
        return (rows_ids, rows, norms)

    def search(self, query, filt, params):
        if filt is None:
            return super().search(query, None, params)
        rows_ids, rows, norms = filt
        return rows_ids[self._top_k(query[0], rows, norms)]


ENGINES = {
    engine.name: engine
    for engine in (FaissIvfFlat, FaissHnsw, Hnswlib, LanceDbIvfPq, BruteForce, MatchingRows)
}
