//! Table-driven tests of the search grammar: inputs that must parse to an exact result, and
//! inputs that must be rejected with a message naming what went wrong.

use kiln_core::search::{
    CompOp, Comparison, EntityType, OrderBy, SearchError, Value, parse_experiment_filter,
    parse_experiment_order_by, parse_model_version_filter, parse_registered_model_filter,
    parse_registry_order_by, parse_run_filter, parse_run_order_by,
};

type FilterFn = fn(&str) -> Result<Vec<Comparison>, SearchError>;
type OrderFn = fn(&str) -> Result<OrderBy, SearchError>;

use CompOp::*;
use EntityType::*;

fn cmp(entity: EntityType, key: &str, op: CompOp, value: Value) -> Comparison {
    Comparison {
        entity,
        key: key.to_string(),
        op,
        value,
    }
}

fn num(n: f64) -> Value {
    Value::Number(n)
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| i.to_string()).collect())
}

fn order(entity: EntityType, key: &str, ascending: bool) -> OrderBy {
    OrderBy {
        entity,
        key: key.to_string(),
        ascending,
    }
}

fn registry_models_order(clause: &str) -> Result<OrderBy, SearchError> {
    parse_registry_order_by(clause, false)
}

fn registry_versions_order(clause: &str) -> Result<OrderBy, SearchError> {
    parse_registry_order_by(clause, true)
}

const PROMPT_FILTER: &str = "name='churn' AND tag.`mlflow.prompt.is_prompt` != 'true'";

#[test]
fn accepted_filters() {
    let runs: FilterFn = parse_run_filter;
    let exps: FilterFn = parse_experiment_filter;
    let models: FilterFn = parse_registered_model_filter;
    let versions: FilterFn = parse_model_version_filter;
    let prompt = vec![
        cmp(Attribute, "name", Eq, s("churn")),
        cmp(Tag, "mlflow.prompt.is_prompt", Ne, s("true")),
    ];

    let cases: Vec<(FilterFn, &str, Vec<Comparison>)> = vec![
        // Empty filters.
        (runs, "", vec![]),
        (runs, "   \t\n ", vec![]),
        (exps, "", vec![]),
        (models, " ", vec![]),
        (versions, "", vec![]),
        // Metrics: every numeric comparator and number syntax.
        (
            runs,
            "metrics.acc > 0.9",
            vec![cmp(Metric, "acc", Gt, num(0.9))],
        ),
        (
            runs,
            "metrics.acc>0.9",
            vec![cmp(Metric, "acc", Gt, num(0.9))],
        ),
        (
            runs,
            "metrics.acc>=-1",
            vec![cmp(Metric, "acc", Ge, num(-1.0))],
        ),
        (
            runs,
            "metrics.acc <= 1e-3",
            vec![cmp(Metric, "acc", Le, num(1e-3))],
        ),
        (
            runs,
            "metrics.acc < -2.5E+4",
            vec![cmp(Metric, "acc", Lt, num(-2.5e4))],
        ),
        (
            runs,
            "metrics.acc = .5",
            vec![cmp(Metric, "acc", Eq, num(0.5))],
        ),
        (
            runs,
            "metrics.acc = 3.",
            vec![cmp(Metric, "acc", Eq, num(3.0))],
        ),
        (
            runs,
            "metrics.acc = +7",
            vec![cmp(Metric, "acc", Eq, num(7.0))],
        ),
        (
            runs,
            "metrics.acc != 10",
            vec![cmp(Metric, "acc", Ne, num(10.0))],
        ),
        (
            runs,
            "METRIC.acc = 1",
            vec![cmp(Metric, "acc", Eq, num(1.0))],
        ),
        // Keys: dotted (split on the first dot only), backticked, double-quoted, odd chars.
        (
            runs,
            "metrics.val.loss < 0.5",
            vec![cmp(Metric, "val.loss", Lt, num(0.5))],
        ),
        (
            runs,
            "metrics.`my key` < 2",
            vec![cmp(Metric, "my key", Lt, num(2.0))],
        ),
        (
            runs,
            "params.\"a b\" = 'x'",
            vec![cmp(Param, "a b", Eq, s("x"))],
        ),
        (
            runs,
            "metrics.`a\\`b` = 1",
            vec![cmp(Metric, "a`b", Eq, num(1.0))],
        ),
        (
            runs,
            "tags.a-b/c = 'x'",
            vec![cmp(Tag, "a-b/c", Eq, s("x"))],
        ),
        (
            runs,
            "tags.`mlflow.source.name` LIKE '%train%'",
            vec![cmp(Tag, "mlflow.source.name", Like, s("%train%"))],
        ),
        (
            runs,
            "tags.ключ = 'значение'",
            vec![cmp(Tag, "ключ", Eq, s("значение"))],
        ),
        // Params and tags, string comparators, keyword case.
        (
            runs,
            "params.lr = '0.01'",
            vec![cmp(Param, "lr", Eq, s("0.01"))],
        ),
        (
            runs,
            "parameters.lr != \"0.01\"",
            vec![cmp(Param, "lr", Ne, s("0.01"))],
        ),
        (
            runs,
            "param.a = 'x' and tag.b like 'y%'",
            vec![cmp(Param, "a", Eq, s("x")), cmp(Tag, "b", Like, s("y%"))],
        ),
        (
            runs,
            "tags.t ILIKE '%X%'",
            vec![cmp(Tag, "t", ILike, s("%X%"))],
        ),
        (
            runs,
            "tags.t iLiKe'%X%'",
            vec![cmp(Tag, "t", ILike, s("%X%"))],
        ),
        (
            runs,
            "params.p IN ('a', 'b')",
            vec![cmp(Param, "p", In, list(&["a", "b"]))],
        ),
        (
            runs,
            "params.p in('a')",
            vec![cmp(Param, "p", In, list(&["a"]))],
        ),
        (
            runs,
            "params.p not   in ( 'a' , \"b\" )",
            vec![cmp(Param, "p", NotIn, list(&["a", "b"]))],
        ),
        (
            runs,
            "tags.p NOT IN ('x,y', ')')",
            vec![cmp(Tag, "p", NotIn, list(&["x,y", ")"]))],
        ),
        // String escapes.
        (
            runs,
            "params.a = 'it\\'s'",
            vec![cmp(Param, "a", Eq, s("it's"))],
        ),
        (
            runs,
            "params.a = 'it''s'",
            vec![cmp(Param, "a", Eq, s("it's"))],
        ),
        (
            runs,
            "params.a = \"say \\\"hi\\\"\"",
            vec![cmp(Param, "a", Eq, s("say \"hi\""))],
        ),
        (
            runs,
            "params.a = 'a\\\\b'",
            vec![cmp(Param, "a", Eq, s("a\\b"))],
        ),
        (
            runs,
            "params.a LIKE '50\\%'",
            vec![cmp(Param, "a", Like, s("50\\%"))],
        ),
        (runs, "params.a = ''", vec![cmp(Param, "a", Eq, s(""))]),
        (
            runs,
            "params.a = 'AND b = 1'",
            vec![cmp(Param, "a", Eq, s("AND b = 1"))],
        ),
        // Run attributes, bare and prefixed, and the `created` synonym.
        (
            runs,
            "run_name = 'x'",
            vec![cmp(Attribute, "run_name", Eq, s("x"))],
        ),
        (
            runs,
            "status = 'FINISHED'",
            vec![cmp(Attribute, "status", Eq, s("FINISHED"))],
        ),
        (
            runs,
            "attributes.status != 'FAILED'",
            vec![cmp(Attribute, "status", Ne, s("FAILED"))],
        ),
        (
            runs,
            "attr.user_id = 'u'",
            vec![cmp(Attribute, "user_id", Eq, s("u"))],
        ),
        (
            runs,
            "run.artifact_uri LIKE 's3://%'",
            vec![cmp(Attribute, "artifact_uri", Like, s("s3://%"))],
        ),
        (
            runs,
            "lifecycle_stage = 'active'",
            vec![cmp(Attribute, "lifecycle_stage", Eq, s("active"))],
        ),
        (
            runs,
            "attributes.run_id IN ('r1','r2')",
            vec![cmp(Attribute, "run_id", In, list(&["r1", "r2"]))],
        ),
        (
            runs,
            "run_id NOT IN (\"a\", 'b')",
            vec![cmp(Attribute, "run_id", NotIn, list(&["a", "b"]))],
        ),
        (
            runs,
            "created > 100",
            vec![cmp(Attribute, "start_time", Gt, num(100.0))],
        ),
        (
            runs,
            "Created >= 1",
            vec![cmp(Attribute, "start_time", Ge, num(1.0))],
        ),
        (
            runs,
            "attributes.created < 5",
            vec![cmp(Attribute, "start_time", Lt, num(5.0))],
        ),
        (
            runs,
            "end_time <= 10",
            vec![cmp(Attribute, "end_time", Le, num(10.0))],
        ),
        // Datasets.
        (
            runs,
            "dataset.name = 'ds'",
            vec![cmp(Dataset, "name", Eq, s("ds"))],
        ),
        (
            runs,
            "datasets.digest IN ('abc')",
            vec![cmp(Dataset, "digest", In, list(&["abc"]))],
        ),
        (
            runs,
            "datasets.context ILIKE 'train%'",
            vec![cmp(Dataset, "context", ILike, s("train%"))],
        ),
        // Conjunctions with whitespace variants.
        (
            runs,
            "\n metrics.a > 1 AND\tparams.b = 'x'  AnD\n\ntags.c != 'y' ",
            vec![
                cmp(Metric, "a", Gt, num(1.0)),
                cmp(Param, "b", Eq, s("x")),
                cmp(Tag, "c", Ne, s("y")),
            ],
        ),
        (
            runs,
            "params.a='x'and params.b='y'",
            vec![cmp(Param, "a", Eq, s("x")), cmp(Param, "b", Eq, s("y"))],
        ),
        // Experiments.
        (
            exps,
            "name = 'exp'",
            vec![cmp(Attribute, "name", Eq, s("exp"))],
        ),
        (
            exps,
            "name LIKE 'a%'",
            vec![cmp(Attribute, "name", Like, s("a%"))],
        ),
        (
            exps,
            "attribute.name ILIKE '%A'",
            vec![cmp(Attribute, "name", ILike, s("%A"))],
        ),
        (
            exps,
            "creation_time > 100 and last_update_time <= 5",
            vec![
                cmp(Attribute, "creation_time", Gt, num(100.0)),
                cmp(Attribute, "last_update_time", Le, num(5.0)),
            ],
        ),
        (
            exps,
            "tags.owner = 'me' AND tag.x != 'y'",
            vec![cmp(Tag, "owner", Eq, s("me")), cmp(Tag, "x", Ne, s("y"))],
        ),
        // Registered models, including the filter the MLflow client injects for prompts.
        (models, PROMPT_FILTER, prompt.clone()),
        (
            models,
            "name LIKE 'c%'",
            vec![cmp(Attribute, "name", Like, s("c%"))],
        ),
        (
            models,
            "tags.k ilike 'v'",
            vec![cmp(Tag, "k", ILike, s("v"))],
        ),
        // Model versions.
        (versions, PROMPT_FILTER, prompt),
        (
            versions,
            "name = 'm' AND version_number >= 2",
            vec![
                cmp(Attribute, "name", Eq, s("m")),
                cmp(Attribute, "version_number", Ge, num(2.0)),
            ],
        ),
        (
            versions,
            "run_id IN ('a','b')",
            vec![cmp(Attribute, "run_id", In, list(&["a", "b"]))],
        ),
        (
            versions,
            "run_id = 'r'",
            vec![cmp(Attribute, "run_id", Eq, s("r"))],
        ),
        (
            versions,
            "source_path LIKE 's3://%'",
            vec![cmp(Attribute, "source_path", Like, s("s3://%"))],
        ),
    ];

    for (parse, input, expected) in cases {
        match parse(input) {
            Ok(got) => assert_eq!(got, expected, "filter {input:?}"),
            Err(e) => panic!("filter {input:?} was rejected: {e}"),
        }
    }
}

#[test]
fn rejected_filters() {
    let runs: FilterFn = parse_run_filter;
    let exps: FilterFn = parse_experiment_filter;
    let models: FilterFn = parse_registered_model_filter;
    let versions: FilterFn = parse_model_version_filter;

    let cases: Vec<(FilterFn, &str, &str)> = vec![
        // OR is not part of MLflow's grammar.
        (
            runs,
            "metrics.a = 1 OR metrics.b = 2",
            "'OR' is not supported",
        ),
        (
            runs,
            "params.a = 'x' or params.b = 'y'",
            "'OR' is not supported",
        ),
        (models, "name = 'a' OR name = 'b'", "'OR' is not supported"),
        // Structure.
        (
            runs,
            "metrics.a >",
            "Expected a value for metrics.a after '>' but reached the end",
        ),
        (runs, "metrics.a", "Expected a comparator after metrics.a"),
        (runs, "metrics.a = 1 AND", "after 'AND' but reached the end"),
        (
            runs,
            "metrics.a = 1 metrics.b = 2",
            "Expected 'AND' between comparisons but found 'metrics.b'",
        ),
        (
            runs,
            "metrics.a = 1, metrics.b = 2",
            "Expected 'AND' between comparisons but found ','",
        ),
        (
            runs,
            "(metrics.a = 1)",
            "Expected an identifier but found '(metrics.a'",
        ),
        (
            runs,
            "metrics.a > AND params.b = 'x'",
            "Expected a numeric value for metrics.a but got AND",
        ),
        (runs, "metrics. = 1", "Expected a key after 'metrics.'"),
        (runs, "metrics.`` = 1", "Empty key"),
        (runs, "metrics.`abc > 1", "Unterminated quoted key"),
        (runs, "params.a = 'abc", "Unterminated string"),
        (runs, "params.a = \"abc\\\"", "Unterminated string"),
        // Comparators.
        (
            runs,
            "metrics.a <> 1",
            "Invalid comparator '<>' after metrics.a",
        ),
        (runs, "metrics.a == 1", "Invalid comparator '=='"),
        (runs, "metrics.a ~ 1", "Invalid comparator '~'"),
        (
            runs,
            "metrics.a LIKE '1'",
            "Invalid comparator 'LIKE' for metrics.a",
        ),
        (
            runs,
            "metrics.a IN (1)",
            "Invalid comparator 'IN' for metrics.a",
        ),
        (
            runs,
            "start_time LIKE '1'",
            "Invalid comparator 'LIKE' for attributes.start_time",
        ),
        (runs, "params.a NOT LIKE 'x'", "Expected 'IN' after 'NOT'"),
        (runs, "params.a BETWEEN 'x'", "Invalid comparator 'BETWEEN'"),
        // Value types.
        (
            runs,
            "params.lr = 0.1",
            "Expected a quoted string value for params.lr but got 0.1",
        ),
        (
            runs,
            "tags.t = abc",
            "Expected a quoted string value for tags.t but got abc",
        ),
        (
            runs,
            "metrics.acc = '0.1'",
            "Expected a numeric value for metrics.acc but got '0.1'",
        ),
        (
            runs,
            "metrics.acc = nan",
            "Expected a numeric value for metrics.acc but got nan",
        ),
        (
            runs,
            "metrics.acc = inf",
            "Expected a numeric value for metrics.acc but got inf",
        ),
        (
            runs,
            "metrics.acc = 1abc",
            "Expected a numeric value for metrics.acc but got 1abc",
        ),
        (
            runs,
            "metrics.acc = 1e",
            "Expected a numeric value for metrics.acc but got 1e",
        ),
        (
            runs,
            "metrics.acc = --1",
            "Expected a numeric value for metrics.acc but got --1",
        ),
        (
            runs,
            "created > 'yesterday'",
            "Expected a numeric value for attributes.start_time",
        ),
        (
            runs,
            "status = FINISHED",
            "Expected a quoted string value for attributes.status but got FINISHED",
        ),
        // IN lists.
        (
            runs,
            "params.a IN 'x'",
            "Expected '(' to start the value list of params.a IN",
        ),
        (runs, "params.a IN ()", "must contain at least one value"),
        (
            runs,
            "params.a IN ('a',)",
            "Expected a quoted string in the value list of params.a but got )",
        ),
        (
            runs,
            "params.a IN ('a' 'b')",
            "Expected ',' or ')' in the value list of params.a but found ''b')'",
        ),
        (
            runs,
            "params.a IN (1)",
            "Expected a quoted string in the value list of params.a but got 1",
        ),
        (
            runs,
            "status IN ('a'",
            "Unterminated value list of attributes.status",
        ),
        // Unknown identifiers.
        (
            runs,
            "foo = 'x'",
            "Invalid attribute key 'foo' specified. Valid keys are '['run_id'",
        ),
        (
            runs,
            "attributes.name = 'x'",
            "Invalid attribute key 'name' specified",
        ),
        (
            runs,
            "Status = 'x'",
            "Invalid attribute key 'Status' specified",
        ),
        (
            runs,
            "foo.bar = 'x'",
            "Invalid entity type 'foo' in identifier 'foo.bar'",
        ),
        (
            runs,
            "datasets.foo = 'x'",
            "Invalid dataset key 'foo' specified",
        ),
        (
            exps,
            "metrics.a > 1",
            "Invalid entity type 'metrics' in experiment filter",
        ),
        (
            exps,
            "datasets.name = 'x'",
            "Invalid entity type 'datasets' in experiment filter",
        ),
        (
            exps,
            "lifecycle_stage = 'active'",
            "Invalid attribute key 'lifecycle_stage'",
        ),
        (
            exps,
            "tags.a IN ('x')",
            "Invalid comparator 'IN' for tags.a",
        ),
        (
            exps,
            "name > 'a'",
            "Invalid comparator '>' for attributes.name",
        ),
        (
            exps,
            "creation_time = 'x'",
            "Expected a numeric value for attributes.creation_time",
        ),
        (models, "run_id = 'x'", "Invalid attribute key 'run_id'"),
        (
            models,
            "params.a = 'x'",
            "Invalid entity type 'params' in registered model filter",
        ),
        (
            versions,
            "version_number > 'x'",
            "Expected a numeric value for attributes.version_number",
        ),
        (
            versions,
            "run_id LIKE 'x'",
            "Invalid comparator 'LIKE' for attributes.run_id",
        ),
        (versions, "version = 1", "Invalid attribute key 'version'"),
    ];

    for (parse, input, fragment) in cases {
        match parse(input) {
            Ok(got) => panic!("filter {input:?} was accepted as {got:?}"),
            Err(e) => assert!(
                e.message.contains(fragment),
                "filter {input:?}: message {:?} lacks {fragment:?}",
                e.message
            ),
        }
    }
}

#[test]
fn accepted_order_by() {
    let runs: OrderFn = parse_run_order_by;
    let exps: OrderFn = parse_experiment_order_by;
    let models: OrderFn = registry_models_order;
    let versions: OrderFn = registry_versions_order;

    let cases: Vec<(OrderFn, &str, OrderBy)> = vec![
        (runs, "metrics.acc", order(Metric, "acc", true)),
        (runs, "metrics.acc DESC", order(Metric, "acc", false)),
        (runs, "metrics.acc desc", order(Metric, "acc", false)),
        (
            runs,
            "  metrics.val.loss\tAsc ",
            order(Metric, "val.loss", true),
        ),
        (runs, "params.lr ASC", order(Param, "lr", true)),
        (runs, "tags.`a b` DESC", order(Tag, "a b", false)),
        (runs, "tag.\"x\"", order(Tag, "x", true)),
        (runs, "start_time", order(Attribute, "start_time", true)),
        (
            runs,
            "attributes.start_time DESC",
            order(Attribute, "start_time", false),
        ),
        (runs, "created DESC", order(Attribute, "start_time", false)),
        (runs, "run_name asc", order(Attribute, "run_name", true)),
        (runs, "attr.status", order(Attribute, "status", true)),
        (runs, "run.run_id", order(Attribute, "run_id", true)),
        (runs, "end_time", order(Attribute, "end_time", true)),
        (runs, "user_id", order(Attribute, "user_id", true)),
        (runs, "artifact_uri", order(Attribute, "artifact_uri", true)),
        (exps, "name", order(Attribute, "name", true)),
        (
            exps,
            "attribute.creation_time DESC",
            order(Attribute, "creation_time", false),
        ),
        (
            exps,
            "experiment_id",
            order(Attribute, "experiment_id", true),
        ),
        (
            exps,
            "last_update_time asc",
            order(Attribute, "last_update_time", true),
        ),
        (models, "name DESC", order(Attribute, "name", false)),
        (
            models,
            "timestamp",
            order(Attribute, "last_updated_timestamp", true),
        ),
        (
            models,
            "last_updated_timestamp DESC",
            order(Attribute, "last_updated_timestamp", false),
        ),
        (
            models,
            "creation_timestamp",
            order(Attribute, "creation_timestamp", true),
        ),
        (
            versions,
            "version_number DESC",
            order(Attribute, "version_number", false),
        ),
        (
            versions,
            "timestamp DESC",
            order(Attribute, "last_updated_timestamp", false),
        ),
        (versions, "name", order(Attribute, "name", true)),
        (
            versions,
            "creation_timestamp",
            order(Attribute, "creation_timestamp", true),
        ),
    ];

    for (parse, input, expected) in cases {
        match parse(input) {
            Ok(got) => assert_eq!(got, expected, "order_by {input:?}"),
            Err(e) => panic!("order_by {input:?} was rejected: {e}"),
        }
    }
}

#[test]
fn rejected_order_by() {
    let runs: OrderFn = parse_run_order_by;
    let exps: OrderFn = parse_experiment_order_by;
    let models: OrderFn = registry_models_order;
    let versions: OrderFn = registry_versions_order;

    let cases: Vec<(OrderFn, &str, &str)> = vec![
        (runs, "", "expected an identifier"),
        (runs, "   ", "expected an identifier"),
        (
            runs,
            "metrics.acc DESC extra",
            "unexpected trailing text 'extra'",
        ),
        (runs, "metrics.acc,", "unexpected trailing text ','"),
        (
            runs,
            "metrics.acc DESC, params.a",
            "unexpected trailing text ', params.a'",
        ),
        (runs, "metrics.acc sideways", "Invalid ordering 'sideways'"),
        (runs, "metrics.", "Expected a key after 'metrics.'"),
        (runs, "foo", "Invalid order_by key 'foo' for run search"),
        (
            runs,
            "lifecycle_stage",
            "Invalid order_by key 'lifecycle_stage'",
        ),
        (
            runs,
            "datasets.name",
            "Invalid entity type 'datasets' in run order_by",
        ),
        (runs, "bogus.name", "Invalid entity type 'bogus'"),
        (
            exps,
            "tags.a",
            "Invalid entity type 'tags' in experiment order_by",
        ),
        (
            exps,
            "start_time",
            "Invalid order_by key 'start_time' for experiment search",
        ),
        (
            models,
            "version_number",
            "Invalid order_by key 'version_number' for registered model search",
        ),
        (
            versions,
            "experiment_id",
            "Invalid order_by key 'experiment_id' for model version search",
        ),
    ];

    for (parse, input, fragment) in cases {
        match parse(input) {
            Ok(got) => panic!("order_by {input:?} was accepted as {got:?}"),
            Err(e) => assert!(
                e.message.contains(fragment),
                "order_by {input:?}: message {:?} lacks {fragment:?}",
                e.message
            ),
        }
    }
}

#[test]
fn errors_display_their_message() {
    let e = parse_run_filter("params.lr = 0.1").unwrap_err();
    assert_eq!(e.to_string(), e.message);
}

#[test]
fn comparators_render_as_mlflow_spells_them() {
    let rendered: Vec<String> = [Eq, Ne, Lt, Le, Gt, Ge, Like, ILike, In, NotIn]
        .iter()
        .map(|op| op.to_string())
        .collect();
    assert_eq!(
        rendered,
        [
            "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"
        ]
    );
}
