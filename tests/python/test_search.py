"""search_runs through the official client: filter grammar, order_by, pagination, view types."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from helpers import unique

N_RUNS = 30
BASE_START = 1_600_000_000_000
LRS = ["0.1", "0.01", "0.001"]
OPTS = ["adam", "sgd", "rmsprop", "adagrad"]


@dataclass
class Spec:
    i: int
    run_id: str
    name: str
    start_time: int
    status: str
    acc: float | None
    val_loss: float
    lr: str
    opt: str
    team: str
    x: str | None


@dataclass
class Corpus:
    exp_id: str
    other_exp_id: str
    other_ids: list[str]
    runs: list[Spec]

    def ids(self, pred) -> set[str]:
        return {s.run_id for s in self.runs if pred(s)}


@pytest.fixture(scope="module")
def corpus(server) -> Corpus:
    """30 runs with known metrics/params/tags/statuses, plus 5 runs in a second experiment."""
    c = MlflowClient(tracking_uri=server.url)
    exp_id = c.create_experiment(unique("search"))
    specs: list[Spec] = []
    for i in range(N_RUNS):
        start = BASE_START + i * 1000
        run = c.create_run(exp_id, start_time=start, run_name=f"r{i}")
        acc = None if i % 10 == 9 else round(i / N_RUNS, 4)
        spec = Spec(
            i=i,
            run_id=run.info.run_id,
            name=f"r{i}",
            start_time=start,
            status="RUNNING" if i % 6 == 5 else ("FAILED" if i % 6 == 4 else "FINISHED"),
            acc=acc,
            val_loss=round(2.0 - i * 0.1, 4),
            lr=LRS[i % 3],
            opt=OPTS[i % 4],
            team="a" if i % 2 == 0 else "b",
            x=None if i % 7 == 3 else ("y" if i % 5 == 0 else f"z{i}"),
        )
        metrics = [Metric("val loss", spec.val_loss, start + 1, 0)]
        if acc is not None:
            # history: the last (highest step) value is the one searched on
            metrics += [Metric("acc", 0.0, start + 1, 0), Metric("acc", acc, start + 2, 1)]
        tags = [RunTag("team", spec.team)]
        if spec.x is not None:
            tags.append(RunTag("x", spec.x))
        c.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param("lr", spec.lr), Param("opt", spec.opt)],
            tags=tags,
            synchronous=True,
        )
        if spec.status != "RUNNING":
            c.set_terminated(run.info.run_id, status=spec.status, end_time=start + 500)
        specs.append(spec)

    other_exp = c.create_experiment(unique("search-other"))
    other_ids = []
    for j in range(5):
        r = c.create_run(other_exp, start_time=BASE_START + 100_000 + j, run_name=f"o{j}")
        c.log_batch(r.info.run_id, metrics=[Metric("acc", 0.9, 1, 0)], tags=[RunTag("team", "a")], synchronous=True)
        other_ids.append(r.info.run_id)
    return Corpus(exp_id=exp_id, other_exp_id=other_exp, other_ids=other_ids, runs=specs)


def ids_of(runs) -> list[str]:
    return [r.info.run_id for r in runs]


def search(c: MlflowClient, corpus: Corpus, flt: str = "", **kw):
    return c.search_runs([corpus.exp_id], filter_string=flt, max_results=1000, **kw)


FILTERS = [
    ("metrics.acc > 0.5", lambda s: s.acc is not None and s.acc > 0.5),
    ("metrics.acc >= 0.5", lambda s: s.acc is not None and s.acc >= 0.5),
    ("metrics.acc <= 0.1", lambda s: s.acc is not None and s.acc <= 0.1),
    ("metrics.acc = 0.0", lambda s: s.acc == 0.0),
    ("metrics.acc != 0.0", lambda s: s.acc is not None and s.acc != 0.0),
    ("params.lr = '0.1'", lambda s: s.lr == "0.1"),
    ("params.lr != '0.1'", lambda s: s.lr != "0.1"),
    ("params.opt LIKE '%a%'", lambda s: "a" in s.opt),
    ("params.opt ILIKE 'ADA%'", lambda s: s.opt.startswith("ada")),
    ("tags.team = 'a'", lambda s: s.team == "a"),
    ("tags.x != 'y'", lambda s: s.x is not None and s.x != "y"),
    ("tags.x = 'y'", lambda s: s.x == "y"),
    ("tags.x LIKE 'z1%'", lambda s: s.x is not None and s.x.startswith("z1")),
    ("tags.x IS NULL", lambda s: s.x is None),
    ("tags.x IS NOT NULL", lambda s: s.x is not None),
    ("attributes.status = 'FINISHED'", lambda s: s.status == "FINISHED"),
    ("attributes.status != 'RUNNING'", lambda s: s.status != "RUNNING"),
    ("run_name LIKE 'r1%'", lambda s: s.name.startswith("r1")),
    ("attributes.run_name = 'r7'", lambda s: s.name == "r7"),
    ("metrics.`val loss` < 1", lambda s: s.val_loss < 1),
    ("attributes.start_time > 1600000015000", lambda s: s.start_time > 1_600_000_015_000),
    ("attributes.start_time <= 1600000003000", lambda s: s.start_time <= 1_600_000_003_000),
    (
        "metrics.acc > 0.2 AND params.lr = '0.01' AND tags.team = 'b'",
        lambda s: s.acc is not None and s.acc > 0.2 and s.lr == "0.01" and s.team == "b",
    ),
    ("params.lr = '0.1' and attributes.status = 'FINISHED'", lambda s: s.lr == "0.1" and s.status == "FINISHED"),
]


@pytest.mark.parametrize("flt,pred", FILTERS, ids=[f for f, _ in FILTERS])
def test_filters(corpus, flt, pred):
    c = MlflowClient()
    got = ids_of(search(c, corpus, flt))
    assert len(got) == len(set(got)), "duplicate runs in result"
    want = corpus.ids(pred)
    assert want, f"test data bug: {flt} matches nothing"
    assert set(got) == want, f"{flt}: extra={set(got) - want} missing={want - set(got)}"


def test_run_id_in_filter(corpus):
    c = MlflowClient()
    pick = [corpus.runs[3].run_id, corpus.runs[17].run_id]
    got = search(c, corpus, f"attributes.run_id IN ('{pick[0]}', '{pick[1]}')")
    assert set(ids_of(got)) == set(pick)


def test_params_in_filter(corpus):
    """MLflow only allows IN on attributes.run_id / datasets; a server may be a superset but never wrong."""
    c = MlflowClient()
    try:
        got = search(c, corpus, "params.opt IN ('adam','sgd')")
    except MlflowException as e:
        assert e.error_code == "INVALID_PARAMETER_VALUE", e
        return
    assert set(ids_of(got)) == corpus.ids(lambda s: s.opt in ("adam", "sgd"))


def test_invalid_filter_rejected(corpus):
    c = MlflowClient()
    for bad in ["metrics.acc >>> 1", "nonsense.key = 'x'", "metrics.acc = 'text'", "attributes.bogus = 'x'"]:
        with pytest.raises(MlflowException) as info:
            search(c, corpus, bad)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE", (bad, info.value)


def test_search_run_data_is_complete(corpus):
    c = MlflowClient()
    spec = corpus.runs[8]
    (run,) = search(c, corpus, "attributes.run_name = 'r8'")
    assert run.info.run_id == spec.run_id
    assert run.info.status == spec.status
    assert run.info.start_time == spec.start_time
    assert run.data.metrics == {"acc": spec.acc, "val loss": spec.val_loss}
    assert run.data.params == {"lr": spec.lr, "opt": spec.opt}
    assert run.data.tags["team"] == spec.team
    assert run.data.tags.get("x") == spec.x


def test_order_by_metric_desc(corpus):
    c = MlflowClient()
    got = search(c, corpus, order_by=["metrics.acc DESC"])
    with_acc = [s for s in corpus.runs if s.acc is not None]
    want_head = [s.run_id for s in sorted(with_acc, key=lambda s: -s.acc)]
    got_ids = ids_of(got)
    assert len(got_ids) == N_RUNS
    assert got_ids[: len(want_head)] == want_head
    # runs without the metric come last
    assert set(got_ids[len(want_head):]) == corpus.ids(lambda s: s.acc is None)


def test_order_by_metric_asc_backticked(corpus):
    c = MlflowClient()
    got = search(c, corpus, order_by=["metrics.`val loss` ASC"])
    assert ids_of(got) == [s.run_id for s in sorted(corpus.runs, key=lambda s: s.val_loss)]


def test_order_by_param_then_start_time(corpus):
    c = MlflowClient()
    got = search(c, corpus, order_by=["params.lr ASC", "attributes.start_time ASC"])
    want = [s.run_id for s in sorted(corpus.runs, key=lambda s: (s.lr, s.start_time))]
    assert ids_of(got) == want


def test_order_by_start_time(corpus):
    c = MlflowClient()
    asc = search(c, corpus, order_by=["attributes.start_time"])
    assert ids_of(asc) == [s.run_id for s in corpus.runs]
    desc = search(c, corpus, order_by=["attributes.start_time DESC"])
    assert ids_of(desc) == [s.run_id for s in reversed(corpus.runs)]
    # default order is start_time DESC
    default = search(c, corpus)
    assert ids_of(default) == [s.run_id for s in reversed(corpus.runs)]


def test_order_by_run_name_and_tag(corpus):
    c = MlflowClient()
    got = search(c, corpus, order_by=["attributes.run_name DESC"])
    assert ids_of(got) == [s.run_id for s in sorted(corpus.runs, key=lambda s: s.name, reverse=True)]
    got = search(c, corpus, order_by=["tags.team ASC", "attributes.start_time DESC"])
    want = [s.run_id for s in sorted(corpus.runs, key=lambda s: (s.team, -s.start_time))]
    assert ids_of(got) == want


@pytest.mark.parametrize("page_size", [1, 7, 30])
def test_pagination(corpus, page_size):
    c = MlflowClient()
    order = ["metrics.`val loss` DESC"]
    want = [s.run_id for s in sorted(corpus.runs, key=lambda s: -s.val_loss)]
    got, token, pages = [], None, 0
    while True:
        page = c.search_runs([corpus.exp_id], max_results=page_size, order_by=order, page_token=token)
        pages += 1
        assert len(page) <= page_size
        got.extend(ids_of(page))
        token = page.token
        if not token:
            break
        assert pages <= N_RUNS + 1, "pagination does not terminate"
    assert got == want
    assert pages in (-(-N_RUNS // page_size), -(-N_RUNS // page_size) + 1)


def test_pagination_with_filter(corpus):
    c = MlflowClient()
    flt = "tags.team = 'a'"
    want = [s.run_id for s in corpus.runs if s.team == "a"]  # start_time ASC
    got, token = [], None
    for _ in range(20):
        page = c.search_runs(
            [corpus.exp_id], filter_string=flt, max_results=4, order_by=["attributes.start_time ASC"], page_token=token
        )
        got.extend(ids_of(page))
        token = page.token
        if not token:
            break
    assert got == want


def test_fluent_search_runs(corpus):
    runs = mlflow.search_runs(
        experiment_ids=[corpus.exp_id],
        filter_string="metrics.acc > 0.5",
        order_by=["metrics.acc ASC"],
        output_format="list",
    )
    want = [s.run_id for s in sorted((s for s in corpus.runs if s.acc is not None and s.acc > 0.5), key=lambda s: s.acc)]
    assert ids_of(runs) == want
    # by experiment name too
    name = MlflowClient().get_experiment(corpus.exp_id).name
    runs = mlflow.search_runs(experiment_names=[name], filter_string="params.lr = '0.001'", output_format="list")
    assert set(ids_of(runs)) == corpus.ids(lambda s: s.lr == "0.001")


def test_fluent_search_runs_pandas(corpus):
    pd = pytest.importorskip("pandas")
    df = mlflow.search_runs(experiment_ids=[corpus.exp_id], filter_string="tags.team = 'b'")
    assert isinstance(df, pd.DataFrame)
    assert set(df["run_id"]) == corpus.ids(lambda s: s.team == "b")
    row = df[df["run_id"] == corpus.runs[1].run_id].iloc[0]
    assert row["params.lr"] == corpus.runs[1].lr
    assert row["metrics.val loss"] == corpus.runs[1].val_loss
    assert row["tags.team"] == "b"


def test_search_across_experiments(corpus):
    c = MlflowClient()
    got = c.search_runs([corpus.exp_id, corpus.other_exp_id], filter_string="tags.team = 'a'", max_results=1000)
    want = corpus.ids(lambda s: s.team == "a") | set(corpus.other_ids)
    assert set(ids_of(got)) == want
    assert len(got) == len(want)
    assert {r.info.experiment_id for r in got} == {corpus.exp_id, corpus.other_exp_id}
    only_other = c.search_runs([corpus.other_exp_id])
    assert set(ids_of(only_other)) == set(corpus.other_ids)
    # default order across experiments: start_time DESC (the other experiment's runs started later)
    both = c.search_runs([corpus.exp_id, corpus.other_exp_id], max_results=1000)
    assert ids_of(both)[:5] == list(reversed(corpus.other_ids))


def test_view_types(client):
    exp_id = client.create_experiment(unique("views"))
    ids = [client.create_run(exp_id, start_time=BASE_START + i).info.run_id for i in range(5)]
    client.delete_run(ids[1])
    client.delete_run(ids[3])
    active = client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY)
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    all_ = client.search_runs([exp_id], run_view_type=ViewType.ALL)
    assert set(ids_of(active)) == {ids[0], ids[2], ids[4]}
    assert set(ids_of(deleted)) == {ids[1], ids[3]}
    assert ids_of(all_) == list(reversed(ids))
    assert all(r.info.lifecycle_stage == "deleted" for r in deleted)
    # default view is ACTIVE_ONLY
    assert set(ids_of(client.search_runs([exp_id]))) == {ids[0], ids[2], ids[4]}


def test_search_empty_experiment(client):
    exp_id = client.create_experiment(unique("empty"))
    page = client.search_runs([exp_id])
    assert list(page) == []
    assert not page.token


def test_like_and_equals_are_case_sensitive(corpus):
    """MLflow makes LIKE case-sensitive on every backend (SQLite: PRAGMA case_sensitive_like); ILIKE is not."""
    c = MlflowClient()
    assert list(search(c, corpus, "params.opt LIKE 'ADA%'")) == []
    assert list(search(c, corpus, "tags.team = 'A'")) == []
    assert list(search(c, corpus, "run_name LIKE 'R1%'")) == []
    got = search(c, corpus, "run_name ILIKE 'R1%'")
    assert set(ids_of(got)) == corpus.ids(lambda s: s.name.startswith("r1"))
    got = search(c, corpus, "tags.team ILIKE 'A'")
    assert set(ids_of(got)) == corpus.ids(lambda s: s.team == "a")


def test_like_wildcards(corpus):
    c = MlflowClient()
    # '_' matches exactly one character
    got = search(c, corpus, "run_name LIKE 'r_'")
    assert set(ids_of(got)) == corpus.ids(lambda s: len(s.name) == 2)
    got = search(c, corpus, "params.opt LIKE '%d%'")
    assert set(ids_of(got)) == corpus.ids(lambda s: "d" in s.opt)


def test_max_results_limits(corpus):
    c = MlflowClient()
    page = c.search_runs([corpus.exp_id], max_results=3)
    assert len(page) == 3 and page.token
    with pytest.raises(MlflowException) as info:
        c.search_runs([corpus.exp_id], max_results=50001)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_bad_order_by_and_token(corpus):
    c = MlflowClient()
    for bad in (["metrics.acc SIDEWAYS"], ["nonsense.acc"], ["attributes.bogus"]):
        with pytest.raises(MlflowException) as info:
            c.search_runs([corpus.exp_id], order_by=bad)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE", (bad, info.value)
    with pytest.raises(MlflowException) as info:
        c.search_runs([corpus.exp_id], page_token="not-a-real-token")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
