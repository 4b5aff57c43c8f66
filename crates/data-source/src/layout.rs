//! The shape of a table's records: how many fields, which one is the label, their names.

use crate::{DataError, LabelColumn};

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Fields per record, the label included.
    pub n_fields: usize,
    pub label_index: Option<usize>,
    /// Names of all fields (label included), from a header or JSON object keys.
    pub names: Option<Vec<String>>,
}

impl Layout {
    /// # Errors
    /// [`DataError::NoFeatures`] when the label is the only field.
    pub(crate) fn new(
        n_fields: usize,
        label_index: Option<usize>,
        names: Option<Vec<String>>,
    ) -> Result<Self, DataError> {
        let n_features = n_fields - usize::from(label_index.is_some());
        if n_features == 0 {
            if let Some(label) = label_index {
                let label = names
                    .as_ref()
                    .and_then(|n| n.get(label).cloned())
                    .unwrap_or_default();
                return Err(DataError::NoFeatures { label });
            }
            return Err(DataError::Empty);
        }
        Ok(Self {
            n_fields,
            label_index,
            names,
        })
    }

    pub(crate) fn n_features(&self) -> usize {
        self.n_fields - usize::from(self.label_index.is_some())
    }

    /// The name of field `column` (0-based), when the input has names.
    pub(crate) fn name(&self, column: usize) -> Option<String> {
        self.names.as_ref().and_then(|n| n.get(column).cloned())
    }

    /// The feature names: every name except the label's.
    pub(crate) fn feature_names(&self) -> Option<Vec<String>> {
        self.names.as_ref().map(|names| {
            names
                .iter()
                .enumerate()
                .filter(|&(i, _)| Some(i) != self.label_index)
                .map(|(_, n)| n.clone())
                .collect()
        })
    }
}

/// Finds the label column among `names`.
///
/// # Errors
/// [`DataError::LabelNotFound`] when a required label is absent (or the input has no names).
pub(crate) fn resolve_label(
    names: Option<&[String]>,
    label: &LabelColumn,
) -> Result<Option<usize>, DataError> {
    let (wanted, required) = match label {
        LabelColumn::Disabled => return Ok(None),
        LabelColumn::Detect(name) => (name, false),
        LabelColumn::Required(name) => (name, true),
    };
    let found = names.and_then(|n| n.iter().position(|c| c == wanted));
    if found.is_none() && required {
        let available = match names {
            Some(n) => format!(
                "the columns are {}",
                n.iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "the input has no header naming its columns".to_string(),
        };
        return Err(DataError::LabelNotFound {
            name: wanted.clone(),
            available,
        });
    }
    Ok(found)
}
