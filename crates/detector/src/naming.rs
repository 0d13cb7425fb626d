//! Naming partitions: `col=value[/col=value...]` from an action's `partitionValues`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The name Delta and Hive give a null partition value.
pub const NULL_PARTITION_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// How to turn `partitionValues` into a partition name: the partition columns in
/// order, each with the key it has in `partitionValues` (its physical name under
/// column mapping, its own name otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionNaming {
    /// `(logical name, key in partitionValues)` per partition column, in order.
    pub columns: Vec<(String, String)>,
}

/// The parts of a `metaData` action the detector needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetadataAction {
    /// The table's id: a new one means the table was replaced (re-created).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "partitionColumns", default)]
    pub partition_columns: Vec<String>,
    #[serde(rename = "schemaString", default)]
    pub schema_string: String,
    #[serde(default)]
    pub configuration: HashMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct SchemaJson {
    #[serde(default)]
    fields: Vec<FieldJson>,
}

#[derive(Deserialize)]
struct FieldJson {
    name: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
}

impl PartitionNaming {
    /// The naming a `metaData` action declares.
    pub(crate) fn from_metadata(metadata: &MetadataAction) -> Self {
        let mapped = metadata
            .configuration
            .get("delta.columnMapping.mode")
            .and_then(|m| m.as_deref())
            .is_some_and(|m| m != "none");
        let physical: HashMap<String, String> = if mapped {
            serde_json::from_str::<SchemaJson>(&metadata.schema_string)
                .map(|s| {
                    s.fields
                        .into_iter()
                        .filter_map(|f| {
                            let p = f.metadata.get("delta.columnMapping.physicalName")?;
                            Some((f.name, p.as_str()?.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            HashMap::new()
        };
        let columns = metadata
            .partition_columns
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    physical.get(c).cloned().unwrap_or_else(|| c.clone()),
                )
            })
            .collect();
        PartitionNaming { columns }
    }

    /// The logical partition column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|(l, _)| l.clone()).collect()
    }

    /// `col=value/...` for an action's partition values; `None` for an unpartitioned
    /// table.
    pub fn name(&self, values: &HashMap<String, Option<String>>) -> Option<String> {
        if self.columns.is_empty() {
            return None;
        }
        let mut name = String::new();
        for (i, (logical, key)) in self.columns.iter().enumerate() {
            if i > 0 {
                name.push('/');
            }
            name.push_str(logical);
            name.push('=');
            match values.get(key).and_then(|v| v.as_deref()) {
                Some(v) => name.push_str(v),
                None => name.push_str(NULL_PARTITION_VALUE),
            }
        }
        Some(name)
    }
}

/// Splits a name made by [`PartitionNaming::name`] into its values, given the
/// logical partition columns in order. A value ends where `/<next column>=` starts,
/// so values may hold `/` and `=` themselves.
pub(crate) fn split_name<'c, 'n>(
    columns: &'c [String],
    name: &'n str,
) -> Option<Vec<(&'c str, Option<&'n str>)>> {
    let mut rest = name;
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        rest = rest.strip_prefix(column.as_str())?.strip_prefix('=')?;
        let value = match columns.get(i + 1) {
            Some(next) => {
                let end = rest.find(&format!("/{next}="))?;
                let value = &rest[..end];
                rest = &rest[end + 1..];
                value
            }
            None => std::mem::take(&mut rest),
        };
        let value = (value != NULL_PARTITION_VALUE).then_some(value);
        values.push((column.as_str(), value));
    }
    (rest.is_empty() && !columns.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn names_columns_in_order_with_nulls_and_raw_values() {
        let naming = PartitionNaming {
            columns: vec![("a".into(), "a".into()), ("b".into(), "b".into())],
        };
        assert_eq!(
            naming
                .name(&values(&[("b", Some("B B")), ("a", Some("1"))]))
                .unwrap(),
            "a=1/b=B B"
        );
        assert_eq!(
            naming.name(&values(&[("a", None)])).unwrap(),
            "a=__HIVE_DEFAULT_PARTITION__/b=__HIVE_DEFAULT_PARTITION__"
        );
        assert_eq!(PartitionNaming { columns: vec![] }.name(&values(&[])), None);
    }

    #[test]
    fn names_split_back_into_their_values() {
        let columns = vec!["a".to_owned(), "b".to_owned()];
        let naming = PartitionNaming {
            columns: vec![("a".into(), "a".into()), ("b".into(), "b".into())],
        };
        for (a, b) in [
            (Some("1"), Some("x")),
            (Some("A/A"), Some("b=c")),
            (None, Some("B B")),
        ] {
            let name = naming.name(&values(&[("a", a), ("b", b)])).unwrap();
            assert_eq!(
                split_name(&columns, &name).unwrap(),
                [("a", a), ("b", b)],
                "{name}"
            );
        }
        assert_eq!(split_name(&columns, "b=1/a=2"), None);
        assert_eq!(split_name(&columns, "a=1"), None);
    }

    #[test]
    fn column_mapping_uses_physical_keys_and_logical_names() {
        let metadata = MetadataAction {
            id: None,
            partition_columns: vec!["Company Name".into()],
            schema_string: r#"{"type":"struct","fields":[{"name":"Company Name","type":"string",
                "nullable":true,"metadata":{"delta.columnMapping.physicalName":"col-1"}}]}"#
                .into(),
            configuration: [(
                "delta.columnMapping.mode".to_owned(),
                Some("name".to_owned()),
            )]
            .into(),
        };
        let naming = PartitionNaming::from_metadata(&metadata);
        assert_eq!(
            naming.name(&values(&[("col-1", Some("BME"))])).unwrap(),
            "Company Name=BME"
        );
    }
}
