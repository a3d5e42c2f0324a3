//! What a pipeline file's problems look like: where each is (file, line,
//! column), what is wrong, and how to fix it.

use std::fmt;
use std::ops::Range;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line and column of the offending value (0 when unknown).
    pub line: usize,
    /// Column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineErrors(pub Vec<PipelineError>);

impl fmt::Display for PipelineErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PipelineErrors {}

/// Places problems in the text of one file.
pub(super) struct Reporter<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Reporter<'_> {
    /// A problem at `span` of the text (`None`: the file as a whole).
    pub(super) fn at(
        &self,
        span: Option<Range<usize>>,
        message: String,
        help: Option<String>,
    ) -> PipelineError {
        let (line, column) = match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        PipelineError {
            file: self.file.to_owned(),
            line,
            column,
            message,
            help,
        }
    }
}
