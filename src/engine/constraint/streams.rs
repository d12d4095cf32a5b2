//! The engine's side of constrained decoding: a stream's constraint from its parameters, and the
//! token table each engine builds once.

use super::{is_lark, Constraint, Spec, Vocabulary};
use crate::engine::error::{Error, Result};
use crate::engine::{stack, Engine, GenerateParams};
use std::sync::Arc;

impl Engine {
    /// The stream's constraint: its JSON schema, or its grammar in llguidance's Lark syntax
    /// (None for none, or for a GBNF grammar).
    pub(crate) fn constraint_for(&self, params: &GenerateParams) -> Result<Option<Constraint>> {
        let spec = match (&params.json_schema, &params.grammar) {
            (Some(schema), _) => Spec::JsonSchema(schema),
            (None, Some(g)) if is_lark(g) => Spec::Lark(g),
            _ => return Ok(None),
        };
        let vocabulary = self.vocabulary()?;
        // llguidance's compilers recurse along the schema's or grammar's nesting.
        stack::on_deep_stack(|| Constraint::new(&vocabulary, spec)).map(Some)
    }

    /// Whether `text` is a whole output that the `json_schema` (or Lark `grammar`) of `params`
    /// allows, followed token by token in the model's own tokens of it, as a stream would write
    /// it. For tests and coverage reports: Err where `minerva_stream_new` would refuse it.
    #[doc(hidden)]
    pub fn constraint_accepts(&self, params: &GenerateParams, text: &str) -> Result<bool> {
        params.check()?;
        let Some(mut c) = self.constraint_for(params)? else {
            return Err(Error::invalid("no json_schema or Lark grammar"));
        };
        c.accepts(&self.model.tokenize(text, false, false)?)
    }

    /// The token table of constrained decoding (built at the first call: about a second for a
    /// vocabulary of 262,144 tokens; streams of other threads wait for it).
    fn vocabulary(&self) -> Result<Arc<Vocabulary>> {
        self.vocabulary
            .get_or_init(|| Vocabulary::build(self.model.clone()).map(Arc::new))
            .clone()
    }
}
