//! Arrow types as Delta stores them: a table's schema, and the types that compare
//! equal across the two.

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::DataType;
use url::Url;

use crate::error::{Error, Result};

/// The table's schema at its loaded version, in Arrow terms.
pub(crate) fn arrow_schema(
    table: &DeltaTable,
    url: &Url,
    action: &'static str,
) -> Result<deltalake::arrow::datatypes::SchemaRef> {
    Ok(table
        .snapshot()
        .map_err(|source| Error::Delta {
            action,
            table: url.clone(),
            source,
        })?
        .snapshot()
        .arrow_schema())
}

/// The type of a column's values: a Delta scan gives partition columns as
/// dictionaries.
pub(crate) fn value_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        other => other.clone(),
    }
}

/// Arrow types that Delta stores as the same logical type compare equal.
pub(crate) fn delta_type(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => delta_type(value),
        other => other.clone(),
    }
}
