//! A padded batch of token sequences, what the encoder's forward takes.

use crate::error::{Error, Result};

/// A padded batch of token sequences, row-major (B, T).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<u8>,
}

impl Batch {
    /// Number of real (unpadded) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    pub fn validate(&self) -> Result<()> {
        let n = self.batch_size * self.seq_len;
        if self.input_ids.len() != n || self.token_type_ids.len() != n || self.attention_mask.len() != n {
            return Err(Error::shape(
                "Batch",
                format!(
                    "(B={}, T={}) needs {n} ids, type ids and mask entries; got {}, {}, {}",
                    self.batch_size,
                    self.seq_len,
                    self.input_ids.len(),
                    self.token_type_ids.len(),
                    self.attention_mask.len()
                ),
            ));
        }
        Ok(())
    }
}
