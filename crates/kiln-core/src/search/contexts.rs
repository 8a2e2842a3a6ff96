//! The rule tables of the search grammar: which entities, attributes, comparators and
//! order keys each search (runs, experiments, registered models, model versions) accepts.

use super::{CompOp, EntityType};
/// Whether a field compares against numbers or quoted strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Number,
    Text,
}

pub(super) const NUMERIC_OPS: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Lt,
    CompOp::Le,
    CompOp::Gt,
    CompOp::Ge,
];
pub(super) const STRING_OPS: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Like,
    CompOp::ILike,
    CompOp::In,
    CompOp::NotIn,
];
/// Params and tags of runs also answer `IS NULL` / `IS NOT NULL` (MLflow 3).
pub(super) const PRESENCE_STRING_OPS: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Like,
    CompOp::ILike,
    CompOp::In,
    CompOp::NotIn,
    CompOp::IsNull,
    CompOp::IsNotNull,
];
pub(super) const PATTERN_OPS: &[CompOp] = &[CompOp::Eq, CompOp::Ne, CompOp::Like, CompOp::ILike];
pub(super) const MEMBERSHIP_OPS: &[CompOp] = &[CompOp::Eq, CompOp::Ne, CompOp::In, CompOp::NotIn];

/// A searchable field with a fixed name (an attribute or dataset key).
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) ops: &'static [CompOp],
}

pub(super) const fn field(name: &'static str, kind: Kind, ops: &'static [CompOp]) -> Field {
    Field { name, kind, ops }
}

pub(super) struct FilterContext {
    /// "run", "experiment", ...: names the search in error messages.
    pub(super) subject: &'static str,
    /// Entities whose keys are user-chosen (metrics, params, tags).
    pub(super) free: &'static [(EntityType, Kind, &'static [CompOp])],
    pub(super) attributes: &'static [Field],
    /// Empty when the context has no `datasets.` prefix.
    pub(super) datasets: &'static [Field],
    /// Attribute spellings MLflow accepts for another attribute.
    pub(super) aliases: &'static [(&'static str, &'static str)],
}

pub(super) struct OrderContext {
    pub(super) subject: &'static str,
    pub(super) free: &'static [EntityType],
    pub(super) attributes: &'static [&'static str],
    pub(super) aliases: &'static [(&'static str, &'static str)],
}

/// MLflow treats `created` (as the UI labels it) as `start_time`.
pub(super) const RUN_ALIASES: &[(&str, &str)] =
    &[("created", "start_time"), ("Created", "start_time")];
pub(super) const REGISTRY_ALIASES: &[(&str, &str)] = &[("timestamp", "last_updated_timestamp")];

pub(super) const RUN_FILTER: FilterContext = FilterContext {
    subject: "run",
    free: &[
        (EntityType::Metric, Kind::Number, NUMERIC_OPS),
        (EntityType::Param, Kind::Text, PRESENCE_STRING_OPS),
        (EntityType::Tag, Kind::Text, PRESENCE_STRING_OPS),
    ],
    attributes: &[
        field("run_id", Kind::Text, STRING_OPS),
        field("run_name", Kind::Text, STRING_OPS),
        field("status", Kind::Text, STRING_OPS),
        field("user_id", Kind::Text, STRING_OPS),
        field("artifact_uri", Kind::Text, STRING_OPS),
        field("lifecycle_stage", Kind::Text, STRING_OPS),
        field("start_time", Kind::Number, NUMERIC_OPS),
        field("end_time", Kind::Number, NUMERIC_OPS),
    ],
    datasets: &[
        field("name", Kind::Text, STRING_OPS),
        field("digest", Kind::Text, STRING_OPS),
        field("context", Kind::Text, STRING_OPS),
    ],
    aliases: RUN_ALIASES,
};

pub(super) const EXPERIMENT_FILTER: FilterContext = FilterContext {
    subject: "experiment",
    free: &[(EntityType::Tag, Kind::Text, PATTERN_OPS)],
    attributes: &[
        field("name", Kind::Text, PATTERN_OPS),
        field("creation_time", Kind::Number, NUMERIC_OPS),
        field("last_update_time", Kind::Number, NUMERIC_OPS),
    ],
    datasets: &[],
    aliases: &[],
};

pub(super) const REGISTERED_MODEL_FILTER: FilterContext = FilterContext {
    subject: "registered model",
    free: &[(EntityType::Tag, Kind::Text, PATTERN_OPS)],
    attributes: &[field("name", Kind::Text, PATTERN_OPS)],
    datasets: &[],
    aliases: &[],
};

pub(super) const MODEL_VERSION_FILTER: FilterContext = FilterContext {
    subject: "model version",
    free: &[(EntityType::Tag, Kind::Text, PATTERN_OPS)],
    attributes: &[
        field("name", Kind::Text, PATTERN_OPS),
        field("version_number", Kind::Number, NUMERIC_OPS),
        field("run_id", Kind::Text, MEMBERSHIP_OPS),
        field("source_path", Kind::Text, PATTERN_OPS),
    ],
    datasets: &[],
    aliases: &[],
};

pub(super) const RUN_ORDER: OrderContext = OrderContext {
    subject: "run",
    free: &[EntityType::Metric, EntityType::Param, EntityType::Tag],
    attributes: &[
        "start_time",
        "end_time",
        "run_name",
        "run_id",
        "status",
        "user_id",
        "artifact_uri",
    ],
    aliases: RUN_ALIASES,
};

pub(super) const EXPERIMENT_ORDER: OrderContext = OrderContext {
    subject: "experiment",
    free: &[],
    attributes: &["name", "experiment_id", "creation_time", "last_update_time"],
    aliases: &[],
};

pub(super) const REGISTERED_MODEL_ORDER: OrderContext = OrderContext {
    subject: "registered model",
    free: &[],
    attributes: &["name", "last_updated_timestamp", "creation_timestamp"],
    aliases: REGISTRY_ALIASES,
};

pub(super) const MODEL_VERSION_ORDER: OrderContext = OrderContext {
    subject: "model version",
    free: &[],
    attributes: &[
        "name",
        "version_number",
        "creation_timestamp",
        "last_updated_timestamp",
    ],
    aliases: REGISTRY_ALIASES,
};
