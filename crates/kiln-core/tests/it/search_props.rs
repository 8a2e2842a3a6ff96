//! Property tests of the search grammar.
//!
//! The generators below restate each context's rules independently of the parser (which
//! entities, keys, comparators and value kinds are valid), build a random valid filter or
//! order_by clause from them, render it with random spelling choices (prefix synonyms, letter
//! case, key quoting, string delimiters and escapes, whitespace, number formats), and check that
//! parsing gives back exactly what was generated.

use kiln_core::search::{
    CompOp, Comparison, EntityType, OrderBy, SearchError, Value, parse_experiment_filter,
    parse_experiment_order_by, parse_model_version_filter, parse_registered_model_filter,
    parse_registry_order_by, parse_run_filter, parse_run_order_by,
};
use proptest::prelude::*;
use proptest::sample::select;

const NUMERIC: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Lt,
    CompOp::Le,
    CompOp::Gt,
    CompOp::Ge,
];
const STRING: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Like,
    CompOp::ILike,
    CompOp::In,
    CompOp::NotIn,
];
const PRESENCE_STRING: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Like,
    CompOp::ILike,
    CompOp::In,
    CompOp::NotIn,
    CompOp::IsNull,
    CompOp::IsNotNull,
];
const PATTERN: &[CompOp] = &[CompOp::Eq, CompOp::Ne, CompOp::Like, CompOp::ILike];
const MEMBERSHIP: &[CompOp] = &[CompOp::Eq, CompOp::Ne, CompOp::In, CompOp::NotIn];

/// One searchable field: a free-form key space (`key: None`) or a fixed key with the
/// spellings that must normalise to it.
#[derive(Debug, Clone)]
struct FieldSpec {
    entity: EntityType,
    key: Option<(&'static str, &'static [&'static str])>,
    numeric: bool,
    ops: &'static [CompOp],
}

const fn free(entity: EntityType, numeric: bool, ops: &'static [CompOp]) -> FieldSpec {
    FieldSpec {
        entity,
        key: None,
        numeric,
        ops,
    }
}

const fn attr(key: &'static str, numeric: bool, ops: &'static [CompOp]) -> FieldSpec {
    fixed(EntityType::Attribute, key, &[], numeric, ops)
}

const fn fixed(
    entity: EntityType,
    key: &'static str,
    spellings: &'static [&'static str],
    numeric: bool,
    ops: &'static [CompOp],
) -> FieldSpec {
    FieldSpec {
        entity,
        key: Some((key, spellings)),
        numeric,
        ops,
    }
}

fn run_fields() -> Vec<FieldSpec> {
    vec![
        free(EntityType::Metric, true, NUMERIC),
        free(EntityType::Param, false, PRESENCE_STRING),
        free(EntityType::Tag, false, PRESENCE_STRING),
        attr("run_id", false, STRING),
        attr("run_name", false, STRING),
        attr("status", false, STRING),
        attr("user_id", false, STRING),
        attr("artifact_uri", false, STRING),
        attr("lifecycle_stage", false, STRING),
        fixed(
            EntityType::Attribute,
            "start_time",
            &["start_time", "created", "Created"],
            true,
            NUMERIC,
        ),
        attr("end_time", true, NUMERIC),
        fixed(EntityType::Dataset, "name", &[], false, STRING),
        fixed(EntityType::Dataset, "digest", &[], false, STRING),
        fixed(EntityType::Dataset, "context", &[], false, STRING),
    ]
}

fn experiment_fields() -> Vec<FieldSpec> {
    vec![
        free(EntityType::Tag, false, PATTERN),
        attr("name", false, PATTERN),
        attr("creation_time", true, NUMERIC),
        attr("last_update_time", true, NUMERIC),
    ]
}

fn registered_model_fields() -> Vec<FieldSpec> {
    vec![
        free(EntityType::Tag, false, PATTERN),
        attr("name", false, PATTERN),
    ]
}

fn model_version_fields() -> Vec<FieldSpec> {
    vec![
        free(EntityType::Tag, false, PATTERN),
        attr("name", false, PATTERN),
        attr("version_number", true, NUMERIC),
        attr("run_id", false, MEMBERSHIP),
        attr("source_path", false, PATTERN),
    ]
}

/// A tiny deterministic generator for the many small spelling choices, driven by one seed so
/// each generated case stays reproducible (and shrinkable) by proptest.
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*; the seed is forced odd so it never sticks at zero.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// `min..=min+2` whitespace characters.
    fn ws(&mut self, min: usize) -> String {
        let n = min + self.below(3);
        (0..n).map(|_| [' ', '\t', '\n'][self.below(3)]).collect()
    }

    fn random_case(&mut self, word: &str) -> String {
        word.chars()
            .map(|c| {
                if self.coin() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    /// Quotes `text` with `delim`, escaping the delimiter by backslash or by doubling.
    fn quote(&mut self, text: &str, delim: char) -> String {
        let mut out = String::from(delim);
        for c in text.chars() {
            if c == delim {
                out.push(if self.coin() { '\\' } else { delim });
            } else if c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push(delim);
        out
    }

    fn ident(&mut self, entity: EntityType, key: &str) -> String {
        let prefixes: &[&str] = match entity {
            EntityType::Metric => &["metric", "metrics"],
            EntityType::Param => &["param", "params", "parameter", "parameters"],
            EntityType::Tag => &["tag", "tags"],
            EntityType::Attribute => &["attribute", "attributes", "attr", "run"],
            EntityType::Dataset => &["dataset", "datasets"],
        };
        let plain = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
        if entity == EntityType::Attribute && self.coin() {
            return key.to_string();
        }
        let prefix = self.pick(prefixes);
        let prefix = self.random_case(prefix);
        match self.below(3) {
            0 if plain => format!("{prefix}.{key}"),
            1 => format!("{prefix}.{}", self.quote(key, '"')),
            _ => format!("{prefix}.{}", self.quote(key, '`')),
        }
    }

    fn number(&mut self, n: f64) -> String {
        match self.below(3) {
            0 => format!("{n}"),
            1 => format!("{n:e}"),
            _ => format!("{n:?}"),
        }
    }

    fn op(&mut self, op: CompOp) -> String {
        match op {
            CompOp::Like => self.random_case("like"),
            CompOp::ILike => self.random_case("ilike"),
            CompOp::In => self.random_case("in"),
            CompOp::NotIn => format!(
                "{}{}{}",
                self.random_case("not"),
                self.ws(1),
                self.random_case("in")
            ),
            CompOp::IsNull => format!(
                "{}{}{}",
                self.random_case("is"),
                self.ws(1),
                self.random_case("null")
            ),
            CompOp::IsNotNull => format!(
                "{}{}{}{}{}",
                self.random_case("is"),
                self.ws(1),
                self.random_case("not"),
                self.ws(1),
                self.random_case("null")
            ),
            symbol => symbol.to_string(),
        }
    }

    fn string(&mut self, text: &str) -> String {
        let delim = if self.coin() { '\'' } else { '"' };
        self.quote(text, delim)
    }
}

/// A generated comparison: the value the parser must return, and the raw material to render.
#[derive(Debug, Clone)]
struct Term {
    expected: Comparison,
    spelling: String,
}

fn free_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./-]{1,12}",
        "[a-z .`'\"\\\\é/-]{1,12}",
        "\\PC{1,8}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z %_'\"`\\\\()=,]{0,12}", "(?s).{0,12}"]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        -1e6..1e6f64,
        any::<f64>().prop_filter("finite", |n| n.is_finite()),
    ]
}

fn term(fields: Vec<FieldSpec>) -> impl Strategy<Value = Term> {
    select(fields)
        .prop_flat_map(|spec| {
            let key = match spec.key {
                Some((key, _)) => Just(key.to_string()).boxed(),
                None => free_key().boxed(),
            };
            let spellings: Vec<&'static str> = match spec.key {
                Some((key, [])) => vec![key],
                Some((_, spellings)) => spellings.to_vec(),
                None => vec![""],
            };
            (
                Just(spec.clone()),
                key,
                select(spellings),
                select(spec.ops),
                number(),
                text(),
                prop::collection::vec(text(), 1..4),
            )
        })
        .prop_map(|(spec, key, spelling, op, n, t, items)| {
            let value = if matches!(op, CompOp::IsNull | CompOp::IsNotNull) {
                Value::Null
            } else if matches!(op, CompOp::In | CompOp::NotIn) {
                Value::List(items)
            } else if spec.numeric {
                Value::Number(n)
            } else {
                Value::String(t)
            };
            let spelling = if spec.key.is_some() {
                spelling.to_string()
            } else {
                key.clone()
            };
            Term {
                expected: Comparison {
                    entity: spec.entity,
                    key,
                    op,
                    value,
                },
                spelling,
            }
        })
}

fn render_term(term: &Term, c: &mut Choices) -> String {
    let e = &term.expected;
    let ident = c.ident(e.entity, &term.spelling);
    let op = c.op(e.op);
    // Keyword comparators need whitespace to separate them from a bare key.
    let min_ws = usize::from(
        op.chars()
            .all(|ch| ch.is_ascii_alphabetic() || ch.is_whitespace()),
    );
    let value = match &e.value {
        Value::Number(n) => c.number(*n),
        Value::String(t) => c.string(t),
        Value::Null => String::new(),
        Value::List(items) => {
            let rendered: Vec<String> = items
                .iter()
                .map(|i| format!("{}{}{}", c.ws(0), c.string(i), c.ws(0)))
                .collect();
            format!("({})", rendered.join(","))
        }
    };
    format!("{ident}{}{op}{}{value}", c.ws(min_ws), c.ws(min_ws))
}

fn render_filter(terms: &[Term], c: &mut Choices) -> String {
    let mut out = c.ws(0);
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            out += &format!("{}{}{}", c.ws(1), c.random_case("and"), c.ws(1));
        }
        out += &render_term(term, c);
    }
    out += &c.ws(0);
    out
}

type FilterFn = fn(&str) -> Result<Vec<Comparison>, SearchError>;

fn check_round_trip(parse: FilterFn, terms: &[Term], seed: u64) -> Result<(), TestCaseError> {
    let filter = render_filter(terms, &mut Choices(seed | 1));
    let expected: Vec<Comparison> = terms.iter().map(|t| t.expected.clone()).collect();
    match parse(&filter) {
        Ok(got) => prop_assert_eq!(got, expected, "filter {:?}", filter),
        Err(e) => prop_assert!(false, "filter {:?} rejected: {}", filter, e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn run_filters_round_trip(terms in prop::collection::vec(term(run_fields()), 1..5), seed in any::<u64>()) {
        check_round_trip(parse_run_filter, &terms, seed)?;
    }

    #[test]
    fn experiment_filters_round_trip(
        terms in prop::collection::vec(term(experiment_fields()), 1..4),
        seed in any::<u64>(),
    ) {
        check_round_trip(parse_experiment_filter, &terms, seed)?;
    }

    #[test]
    fn registered_model_filters_round_trip(
        terms in prop::collection::vec(term(registered_model_fields()), 1..4),
        seed in any::<u64>(),
    ) {
        check_round_trip(parse_registered_model_filter, &terms, seed)?;
    }

    #[test]
    fn model_version_filters_round_trip(
        terms in prop::collection::vec(term(model_version_fields()), 1..4),
        seed in any::<u64>(),
    ) {
        check_round_trip(parse_model_version_filter, &terms, seed)?;
    }

    /// Every prefix of a valid filter is either accepted or rejected, never a panic; this
    /// reaches the scanner's end-of-input paths inside strings, keys and lists.
    #[test]
    fn truncated_filters_never_panic(
        terms in prop::collection::vec(term(run_fields()), 1..4),
        seed in any::<u64>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let filter = render_filter(&terms, &mut Choices(seed | 1));
        let chars: Vec<char> = filter.chars().collect();
        let truncated: String = chars[..cut.index(chars.len() + 1)].iter().collect();
        let _ = parse_run_filter(&truncated);
    }

    #[test]
    fn parsers_never_panic(input in prop_oneof![
        any::<String>(),
        "[a-zA-Z._ `'\"=!<>(),\\\\0-9eE+-]{0,40}",
        "((metrics|params|tags|attributes|datasets)\\.[a-z`\"]{0,3} ?(=|!=|<=|LIKE|IN|NOT|AND|OR)? ?[-+.0-9e'\"(),a]{0,6} ?){0,4}",
    ]) {
        let _ = parse_run_filter(&input);
        let _ = parse_experiment_filter(&input);
        let _ = parse_registered_model_filter(&input);
        let _ = parse_model_version_filter(&input);
        let _ = parse_run_order_by(&input);
        let _ = parse_experiment_order_by(&input);
        let _ = parse_registry_order_by(&input, false);
        let _ = parse_registry_order_by(&input, true);
    }
}

// ---------------------------------------------------------------------------------------------
// order_by round trip.

/// A sortable key space: free keys under an entity, or one attribute with its spellings.
#[derive(Debug, Clone)]
enum SortSpec {
    Free(EntityType),
    Attr(&'static str, &'static [&'static str]),
}

fn run_sorts() -> Vec<SortSpec> {
    vec![
        SortSpec::Free(EntityType::Metric),
        SortSpec::Free(EntityType::Param),
        SortSpec::Free(EntityType::Tag),
        SortSpec::Attr("start_time", &["start_time", "created", "Created"]),
        SortSpec::Attr("end_time", &["end_time"]),
        SortSpec::Attr("run_name", &["run_name"]),
        SortSpec::Attr("run_id", &["run_id"]),
        SortSpec::Attr("status", &["status"]),
        SortSpec::Attr("user_id", &["user_id"]),
        SortSpec::Attr("artifact_uri", &["artifact_uri"]),
    ]
}

fn experiment_sorts() -> Vec<SortSpec> {
    ["name", "experiment_id", "creation_time", "last_update_time"]
        .into_iter()
        .map(|k| SortSpec::Attr(k, &[]))
        .collect()
}

fn registry_sorts(versions: bool) -> Vec<SortSpec> {
    let mut sorts = vec![
        SortSpec::Attr("name", &[]),
        SortSpec::Attr("creation_timestamp", &[]),
        SortSpec::Attr(
            "last_updated_timestamp",
            &["last_updated_timestamp", "timestamp"],
        ),
    ];
    if versions {
        sorts.push(SortSpec::Attr("version_number", &[]));
    }
    sorts
}

/// An expected OrderBy and the key spelling to render.
fn sort(specs: Vec<SortSpec>) -> impl Strategy<Value = (OrderBy, String)> {
    (
        select(specs),
        free_key(),
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(spec, free, ascending, which)| match spec {
            SortSpec::Free(entity) => (
                OrderBy {
                    entity,
                    key: free.clone(),
                    ascending,
                },
                free,
            ),
            SortSpec::Attr(key, spellings) => {
                let spelling = if spellings.is_empty() {
                    key
                } else {
                    *which.get(spellings)
                };
                let order = OrderBy {
                    entity: EntityType::Attribute,
                    key: key.to_string(),
                    ascending,
                };
                (order, spelling.to_string())
            }
        })
}

type OrderFn = fn(&str) -> Result<OrderBy, SearchError>;

fn check_order_round_trip(
    parse: OrderFn,
    (expected, spelling): &(OrderBy, String),
    seed: u64,
) -> Result<(), TestCaseError> {
    let c = &mut Choices(seed | 1);
    let ident = c.ident(expected.entity, spelling);
    let direction = match (expected.ascending, c.coin()) {
        (true, true) => String::new(),
        (true, false) => format!("{}{}", c.ws(1), c.random_case("asc")),
        (false, _) => format!("{}{}", c.ws(1), c.random_case("desc")),
    };
    let clause = format!("{}{ident}{direction}{}", c.ws(0), c.ws(0));
    match parse(&clause) {
        Ok(got) => prop_assert_eq!(&got, expected, "order_by {:?}", clause),
        Err(e) => prop_assert!(false, "order_by {:?} rejected: {}", clause, e),
    }
    Ok(())
}

fn registry_models_order(clause: &str) -> Result<OrderBy, SearchError> {
    parse_registry_order_by(clause, false)
}

fn registry_versions_order(clause: &str) -> Result<OrderBy, SearchError> {
    parse_registry_order_by(clause, true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn run_order_by_round_trips(case in sort(run_sorts()), seed in any::<u64>()) {
        check_order_round_trip(parse_run_order_by, &case, seed)?;
    }

    #[test]
    fn experiment_order_by_round_trips(case in sort(experiment_sorts()), seed in any::<u64>()) {
        check_order_round_trip(parse_experiment_order_by, &case, seed)?;
    }

    #[test]
    fn registered_model_order_by_round_trips(case in sort(registry_sorts(false)), seed in any::<u64>()) {
        check_order_round_trip(registry_models_order, &case, seed)?;
    }

    #[test]
    fn model_version_order_by_round_trips(case in sort(registry_sorts(true)), seed in any::<u64>()) {
        check_order_round_trip(registry_versions_order, &case, seed)?;
    }
}
