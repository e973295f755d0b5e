"""rayops.util.metrics: Ray's application metrics API, its validation, and what it records.

Metrics record into the process's store (rayops.core_worker.user_metrics.STORE), which is
process-global like Ray's, so each test uses its own metric names.
"""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from rayops.core_worker.user_metrics import STORE, UserMetricStore
from rayops.protocol.metrics import COUNTER, HISTOGRAM, MetricInfo
from rayops.util.metrics import Counter, Gauge, Histogram


def test_counter_inc_with_default_and_given_tags() -> None:
    c = Counter("api_requests", "Requests served.", tag_keys=("route", "code"))
    c.set_default_tags({"route": "/a"})
    c.inc(tags={"code": "200"})
    c.inc(2.5, tags={"code": "200"})
    c.inc(tags={"route": "/b", "code": "500"})
    assert STORE.value("api_requests", (("route", "/a"), ("code", "200"))) == 3.5
    assert STORE.value("api_requests", (("route", "/b"), ("code", "500"))) == 1.0


def test_set_default_tags_returns_the_metric() -> None:
    c = Counter("api_chained", tag_keys=("a",))
    assert c.set_default_tags({"a": "b"}) is c
    assert c.info == {
        "name": "api_chained",
        "description": "",
        "tag_keys": ("a",),
        "default_tags": {"a": "b"},
    }


def test_gauge_keeps_the_last_value() -> None:
    g = Gauge("api_queue_len", tag_keys=("q",))
    g.set(5, tags={"q": "x"})
    g.set(-2.0, tags={"q": "x"})
    assert STORE.value("api_queue_len", (("q", "x"),)) == -2.0


def test_histogram_buckets_are_upper_inclusive() -> None:
    h = Histogram("api_latency", "Latency.", boundaries=[0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    infos, samples = STORE.snapshot(full=True)
    (s,) = [s for s in samples if s.name == "api_latency"]
    assert s.bucket_counts == (2, 1, 1)
    assert s.count == 4
    assert s.value == pytest.approx(3.65)
    assert next(i for i in infos if i.name == "api_latency").boundaries == (0.1, 1.0)
    assert h.info["boundaries"] == [0.1, 1.0]


@pytest.mark.parametrize("cls", [Counter, Gauge])
def test_empty_name_is_refused(cls: type) -> None:
    with pytest.raises(ValueError, match="Empty name"):
        cls("")


def test_invalid_name_warns_and_records_nothing() -> None:
    with pytest.warns(UserWarning, match="Invalid metric name: 1bad-name"):
        c = Counter("1bad-name")
    c.inc()
    assert STORE.value("1bad-name", ()) is None


def test_tag_keys_must_be_a_tuple_of_str() -> None:
    with pytest.raises(TypeError, match="tag_keys should be a tuple"):
        Counter("api_tk_list", tag_keys=["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Tag keys must be str"):
        Counter("api_tk_int", tag_keys=(1,))  # type: ignore[arg-type]


def test_tag_errors() -> None:
    c = Counter("api_tags", tag_keys=("a", "b"))
    with pytest.raises(ValueError, match="Unrecognized tag key z"):
        c.set_default_tags({"z": "1"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        c.set_default_tags({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="Missing value for tag key b"):
        c.inc(tags={"a": "1"})
    with pytest.raises(ValueError, match=r"Unrecognized tag keys: \['c'\]"):
        c.inc(tags={"a": "1", "b": "2", "c": "3"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        c.inc(tags={"a": "1", "b": 2})  # type: ignore[dict-item]


def test_counter_takes_only_positive_numbers() -> None:
    c = Counter("api_positive")
    with pytest.raises(ValueError, match="value must be >0, got 0"):
        c.inc(0)
    with pytest.raises(ValueError, match="value must be >0, got -1"):
        c.inc(-1)
    with pytest.raises(TypeError, match="value must be int or float"):
        c.inc("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value must be int or float"):
        Gauge("api_gauge_type").set(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("boundaries", "error", "match"),
    [
        (None, ValueError, "boundaries argument should be provided"),
        ([], ValueError, "boundaries argument should be provided"),
        ([1.0, 0.0], ValueError, "at index 1.*positive"),
        ([-1.0], ValueError, "at index 0.*positive"),
        ([1.0, 2.0, 2.0], ValueError, "at index 2.*strictly increasing"),
        ([1.0, "2"], TypeError, "at index 1"),
    ],
)
def test_histogram_boundaries_are_validated(
    boundaries: list[float] | None, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Histogram("api_bad_bounds", boundaries=boundaries)


def test_a_name_is_one_kind_of_metric_per_process() -> None:
    Counter("api_kind_clash", tag_keys=("a",))
    Counter("api_kind_clash", tag_keys=("a",))  # again, e.g. in a second actor: fine
    with pytest.raises(ValueError, match="already defined in this process as a counter"):
        Gauge("api_kind_clash", tag_keys=("a",))


def test_metrics_pickle_as_their_definition() -> None:
    c = Counter("api_pickled", "desc", tag_keys=("k",)).set_default_tags({"k": "v"})
    for dumps in (pickle.dumps, cloudpickle.dumps):
        c2 = pickle.loads(dumps(c))
        assert isinstance(c2, Counter)
        assert c2.info == c.info
        c2.inc()
    assert STORE.value("api_pickled", (("k", "v"),)) == 2.0
    h = Histogram("api_pickled_h", boundaries=[1, 2], tag_keys=("k",))
    h2 = pickle.loads(pickle.dumps(h))
    assert isinstance(h2, Histogram) and h2.boundaries == [1, 2]


def test_snapshot_sends_only_what_changed() -> None:
    store = UserMetricStore()
    store.define(MetricInfo("a", COUNTER, "", ()))
    store.define(MetricInfo("h", HISTOGRAM, "", (), (1.0,)))
    store.inc("a", (), 1.0)
    infos, samples = store.snapshot(full=False)
    assert [s.name for s in samples] == ["a"] and [i.name for i in infos] == ["a"]
    assert store.snapshot(full=False) == ([], [])
    assert not store.has_changes()
    store.observe("h", (), 5.0)
    assert store.has_changes()
    _, samples = store.snapshot(full=False)
    assert [(s.name, s.bucket_counts) for s in samples] == [("h", (0, 1))]
    _, samples = store.snapshot(full=True)
    assert sorted(s.name for s in samples) == ["a", "h"]


def test_public_surface() -> None:
    import rayops.util.metrics as m

    assert set(m.__all__) == {"Counter", "Gauge", "Histogram", "Metric"}
