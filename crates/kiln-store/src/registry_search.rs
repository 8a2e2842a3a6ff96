//! `registered-models/search` and `model-versions/search`: the registry filter grammar
//! compiled to one SQL query per page, then tags, aliases and latest versions loaded in
//! bulk for the page.
//!
//! Tag comparisons use EXISTS, except `!=`, which matches entities that do not carry the
//! tag with that value, tag absent included: the client injects
//! ``tag.`mlflow.prompt.is_prompt` != 'true'`` into every registered-model search and
//! expects ordinary models, which have no such tag, to match.

use kiln_core::entities::{ModelVersion, RegisteredModel};
use kiln_core::search::{self, CompOp, Comparison, EntityType, Value};

use crate::error::{Result, StoreError};
use crate::registry::{
    DELETED_STAGE, MV_COLUMNS, RM_COLUMNS, columns, fill_models, fill_versions, mv_from_row,
    rm_from_row,
};
use crate::search_sql::Sql;
use crate::{Store, page};

/// Input of the two registry searches.
#[derive(Debug, Clone, Default)]
pub struct RegistrySearch {
    pub filter: Option<String>,
    pub max_results: Option<i64>,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}

/// Appends a tag condition on `tag_table` correlated by `join` (e.g. `t.name = rm.name`).
fn push_tag(sql: &mut Sql, tag_table: &str, join: &str, c: &Comparison) -> Result<()> {
    if c.op == CompOp::Ne {
        sql.push(&format!(
            "NOT EXISTS (SELECT 1 FROM {tag_table} t WHERE {join} AND t.key = "
        ));
        sql.bind_str(&c.key);
        sql.push(" AND ");
        sql.compare("t.value", CompOp::Eq, &c.value)?;
    } else {
        sql.push(&format!(
            "EXISTS (SELECT 1 FROM {tag_table} t WHERE {join} AND t.key = "
        ));
        sql.bind_str(&c.key);
        sql.push(" AND ");
        sql.compare("t.value", c.op, &c.value)?;
    }
    sql.push(")");
    Ok(())
}

fn wrong_entity(subject: &str, c: &Comparison) -> StoreError {
    StoreError::invalid(format!(
        "Invalid filter for {subject} search: '{}' is neither an attribute nor a tag",
        c.key
    ))
}

/// ORDER BY terms from order_by clauses, with tie-breakers appended unless already used.
/// `columns` maps a normalised key to its column.
fn order_terms(
    clauses: &[String],
    versions: bool,
    column: impl Fn(&str) -> Option<&'static str>,
    tie_breakers: &[(&'static str, &'static str)],
) -> Result<Vec<String>> {
    let mut terms = Vec::new();
    let mut used: Vec<&'static str> = Vec::new();
    for clause in clauses {
        let ob = search::parse_registry_order_by(clause, versions)?;
        let col = column(&ob.key)
            .ok_or_else(|| StoreError::invalid(format!("Invalid order_by key '{}'", ob.key)))?;
        if used.contains(&col) {
            return Err(StoreError::invalid(format!(
                "`order_by` contains duplicate fields: {clauses:?}"
            )));
        }
        used.push(col);
        terms.push(format!(
            "{col} {}",
            if ob.ascending { "ASC" } else { "DESC" }
        ));
    }
    for (col, dir) in tie_breakers {
        if !used.contains(col) {
            terms.push(format!("{col} {dir}"));
        }
    }
    Ok(terms)
}

fn push_page(sql: &mut Sql, terms: &[String], limit: i64, offset: i64) {
    sql.push(&format!(" ORDER BY {} LIMIT ", terms.join(", ")));
    sql.bind_i64(limit + 1);
    sql.push(" OFFSET ");
    sql.bind_i64(offset);
}

fn next_token<T>(items: &mut Vec<T>, limit: i64, offset: i64) -> Option<String> {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        Some(page::encode(offset + limit))
    } else {
        None
    }
}

impl Store {
    /// Searches registered models: default page 100, at most 1000; ordered by name
    /// unless told otherwise.
    pub async fn search_registered_models(
        &self,
        req: RegistrySearch,
    ) -> Result<(Vec<RegisteredModel>, Option<String>)> {
        let limit = page::max_results(req.max_results, 100, 1000)?;
        let offset = page::decode(req.page_token.as_deref())?;
        let filters = search::parse_registered_model_filter(req.filter.as_deref().unwrap_or(""))?;
        let terms = order_terms(
            &req.order_by,
            false,
            |key| match key {
                "name" => Some("rm.name"),
                "creation_timestamp" => Some("rm.creation_time"),
                "last_updated_timestamp" => Some("rm.last_update_time"),
                _ => None,
            },
            &[("rm.name", "ASC")],
        )?;
        let mut sql = Sql::new(self.db.backend);
        sql.push(&format!(
            "SELECT {} FROM registered_models rm WHERE 1 = 1",
            columns(RM_COLUMNS, "rm")
        ));
        for c in &filters {
            sql.push(" AND ");
            match (c.entity, c.key.as_str()) {
                (EntityType::Attribute, "name") => sql.compare("rm.name", c.op, &c.value)?,
                (EntityType::Tag, _) => {
                    push_tag(&mut sql, "registered_model_tags", "t.name = rm.name", c)?
                }
                _ => return Err(wrong_entity("registered model", c)),
            }
        }
        push_page(&mut sql, &terms, limit, offset);
        let mut conn = self.db.pool.acquire().await?;
        let rows = sql.query().fetch_all(&mut *conn).await?;
        let mut models = rows.iter().map(rm_from_row).collect::<Result<Vec<_>>>()?;
        let next = next_token(&mut models, limit, offset);
        fill_models(&mut conn, &mut models).await?;
        Ok((models, next))
    }

    /// Searches model versions: default page 10,000, at most 200,000; ordered by name,
    /// then newest version first, unless told otherwise.
    pub async fn search_model_versions(
        &self,
        req: RegistrySearch,
    ) -> Result<(Vec<ModelVersion>, Option<String>)> {
        let limit = page::max_results(req.max_results, 10_000, 200_000)?;
        let offset = page::decode(req.page_token.as_deref())?;
        let filters = search::parse_model_version_filter(req.filter.as_deref().unwrap_or(""))?;
        let terms = order_terms(
            &req.order_by,
            true,
            |key| match key {
                "name" => Some("mv.name"),
                "version_number" => Some("mv.version"),
                "creation_timestamp" => Some("mv.creation_time"),
                "last_updated_timestamp" => Some("mv.last_update_time"),
                _ => None,
            },
            // MLflow's default order for version search.
            &[
                ("mv.last_update_time", "DESC"),
                ("mv.name", "ASC"),
                ("mv.version", "DESC"),
            ],
        )?;
        let mut sql = Sql::new(self.db.backend);
        sql.push(&format!(
            "SELECT {} FROM model_versions mv WHERE mv.current_stage <> ",
            columns(MV_COLUMNS, "mv")
        ));
        sql.bind_str(DELETED_STAGE);
        for c in &filters {
            sql.push(" AND ");
            match (c.entity, c.key.as_str()) {
                (EntityType::Attribute, key) => {
                    let column = match key {
                        "name" => "mv.name",
                        "version_number" => "mv.version",
                        "run_id" => "mv.run_id",
                        "source_path" => "mv.source",
                        _ => return Err(wrong_entity("model version", c)),
                    };
                    if column == "mv.version" && !matches!(c.value, Value::Number(_)) {
                        return Err(StoreError::invalid(format!(
                            "Invalid value for 'version_number': expected a number, got {:?}",
                            c.value
                        )));
                    }
                    sql.compare(column, c.op, &c.value)?;
                }
                (EntityType::Tag, _) => push_tag(
                    &mut sql,
                    "model_version_tags",
                    "t.name = mv.name AND t.version = mv.version",
                    c,
                )?,
                _ => return Err(wrong_entity("model version", c)),
            }
        }
        push_page(&mut sql, &terms, limit, offset);
        let mut conn = self.db.pool.acquire().await?;
        let rows = sql.query().fetch_all(&mut *conn).await?;
        let mut versions = rows.iter().map(mv_from_row).collect::<Result<Vec<_>>>()?;
        let next = next_token(&mut versions, limit, offset);
        fill_versions(&mut conn, &mut versions).await?;
        Ok((versions, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_terms_append_tie_breakers_and_refuse_duplicates() {
        let col = |k: &str| match k {
            "name" => Some("mv.name"),
            "version_number" => Some("mv.version"),
            "last_updated_timestamp" => Some("mv.last_update_time"),
            _ => None,
        };
        let ties = [("mv.name", "ASC"), ("mv.version", "DESC")];
        assert_eq!(
            order_terms(&[], true, col, &ties).unwrap(),
            vec!["mv.name ASC", "mv.version DESC"]
        );
        assert_eq!(
            order_terms(&["version_number ASC".into()], true, col, &ties).unwrap(),
            vec!["mv.version ASC", "mv.name ASC"]
        );
        assert_eq!(
            order_terms(&["timestamp DESC".into()], true, col, &ties).unwrap(),
            vec!["mv.last_update_time DESC", "mv.name ASC", "mv.version DESC"]
        );
        assert!(order_terms(&["name".into(), "name DESC".into()], true, col, &ties).is_err());
        assert!(order_terms(&["run_id".into()], true, col, &ties).is_err());
    }

    #[test]
    fn not_equal_on_tags_matches_untagged_entities() {
        let mut sql = Sql::new(crate::db::Backend::Postgres);
        let c = Comparison {
            entity: EntityType::Tag,
            key: "mlflow.prompt.is_prompt".into(),
            op: CompOp::Ne,
            value: Value::String("true".into()),
        };
        push_tag(&mut sql, "registered_model_tags", "t.name = rm.name", &c).unwrap();
        assert_eq!(
            sql.text(),
            "NOT EXISTS (SELECT 1 FROM registered_model_tags t WHERE t.name = rm.name AND t.key = $1 AND t.value = $2)"
        );
    }
}
