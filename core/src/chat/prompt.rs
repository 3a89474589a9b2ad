//! What the model sees: the words of a message worth searching the catalog for, the system
//! prompt with the catalog items `chat_begin` found (grounding), the conversation's memory and
//! the message. Also the built-in local responder, which answers from the grounding alone.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::provider::{Completion, Emit, Ending};
use crate::tenancy::Tenant;

/// Tokens of conversation memory sent with a turn (newest messages first).
pub(super) const MEMORY_TOKENS: usize = 2_000;
/// Tokens reserved for the grounding block and the system prompt.
pub(super) const CONTEXT_TOKENS: usize = 800;

/// A conservative token estimate (≈ 3 characters per token; real tokenizers average ≈ 4 for
/// English), so reservations cover what providers report.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(3)
}

/// The words of a message worth searching the catalog for.
pub fn search_words(message: &str) -> Vec<String> {
    const STOP: &[&str] = &[
        "the", "and", "for", "you", "have", "any", "are", "with", "what", "that", "this", "can",
        "your", "how", "much", "does", "want", "need", "looking", "there", "some", "about",
        "would", "like", "please", "show", "find", "which", "who", "why", "was", "were", "has",
        "had", "not", "but", "all", "our", "out", "get", "got", "tell",
    ];
    let mut words: Vec<String> = Vec::new();
    for w in message
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !STOP.contains(w))
    {
        // Plural-insensitive: "shoes" finds "shoe".
        let w = w
            .strip_suffix('s')
            .filter(|s| s.chars().count() >= 3)
            .unwrap_or(w);
        if !words.iter().any(|x| x == w) {
            words.push(w.to_owned());
        }
        if words.len() == 8 {
            break;
        }
    }
    words
}

/// A message of the conversation's memory, as `chat_begin` returns it (oldest first).
#[derive(Debug, Clone, Deserialize)]
pub struct Remembered {
    pub role: String,
    pub content: String,
}

/// A catalog item matching the message, as `chat_begin` returns it (best match first).
#[derive(Debug, Clone, Deserialize)]
pub struct GroundedItem {
    pub sku: String,
    pub name: String,
    /// The price as Postgres prints the numeric (`"120.000"`).
    pub price: String,
    pub currency: String,
    pub in_stock: bool,
    /// The first 300 characters.
    pub description: String,
}

impl GroundedItem {
    fn stock(&self) -> &'static str {
        if self.in_stock {
            "in stock"
        } else {
            "out of stock"
        }
    }
}

/// One message of the prompt, as OpenAI-compatible providers take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

impl PromptMessage {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// The conversation as the model sees it: system prompt with grounding, memory, the message.
pub fn build_prompt(
    tenant: &Tenant,
    memory: &[Remembered],
    grounding: &[GroundedItem],
    message: &str,
) -> Vec<PromptMessage> {
    let mut system = tenant.settings.ai.system_prompt.clone().unwrap_or_else(|| {
        format!(
            "You are the shopping assistant of {}. Answer briefly and only recommend items from the catalog below.",
            tenant.name
        )
    });
    if grounding.is_empty() {
        system.push_str("\n\nNo catalog items match the customer's message.");
    } else {
        system.push_str("\n\nCatalog items matching the customer's message:");
        for g in grounding {
            let _ = write!(
                system,
                "\n- {} (SKU {}): {} {}, {}. {}",
                g.name,
                g.sku,
                g.price,
                g.currency,
                g.stock(),
                g.description
            );
        }
    }
    // Memory window: the newest messages that fit the budget, in order.
    let mut budget = MEMORY_TOKENS;
    let mut kept: Vec<PromptMessage> = Vec::new();
    for m in memory.iter().rev() {
        let cost = estimate_tokens(&m.content) + 4;
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(PromptMessage::new(&m.role, m.content.as_str()));
    }
    kept.reverse();
    let mut messages = vec![PromptMessage::new("system", system)];
    messages.extend(kept);
    messages.push(PromptMessage::new("user", message));
    messages
}

/// The built-in responder's answer: from the grounding alone, clearly marked, so the product
/// works without a provider (and offline).
pub(super) fn local_answer(tenant: &Tenant, grounding: &[GroundedItem], message: &str) -> String {
    let mut text = format!(
        "(Local assistant: no AI provider is configured for {}, so this answer comes from the catalog search alone.) ",
        tenant.name
    );
    if grounding.is_empty() {
        let _ = write!(
            text,
            "I found nothing in the catalog matching \u{201c}{}\u{201d}.",
            message.chars().take(80).collect::<String>()
        );
    } else {
        text.push_str("Here is what I found:");
        for (i, g) in grounding.iter().enumerate() {
            let _ = write!(
                text,
                "\n{}. {}: {} {} ({})",
                i + 1,
                g.name,
                g.price,
                g.currency,
                g.stock()
            );
        }
    }
    text
}

/// Streams the local answer a few words per event, like a model's deltas.
pub(super) async fn run_local(
    text: String,
    prompt: &[PromptMessage],
    emit: Emit<'_>,
) -> Completion {
    let mut sent = String::new();
    let mut ending = Ending::Done;
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for chunk in words.chunks(6) {
        let piece: String = chunk.concat();
        if !emit(&piece) {
            ending = Ending::ClientGone;
            break;
        }
        sent.push_str(&piece);
    }
    let prompt_text: String = prompt.iter().map(|m| m.content.as_str()).collect();
    Completion {
        prompt_tokens: Some(estimate_tokens(&prompt_text) as u64),
        completion_tokens: Some(estimate_tokens(&sent) as u64),
        text: sent,
        ending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::tests::tenant;
    use serde_json::json;

    #[test]
    fn search_words_skip_noise_and_fold_plurals() {
        assert_eq!(
            search_words("Do you have any trail shoes? Shoes for RUNNING please"),
            vec!["trail", "shoe", "running"]
        );
    }

    #[test]
    fn prompts_carry_grounding_and_the_newest_memory_that_fits() {
        let t = tenant("00000000-0000-4000-8000-00000000000a");
        let old = "x".repeat(MEMORY_TOKENS * 3);
        let memory: Vec<Remembered> = serde_json::from_value(json!([
            {"role": "user", "content": old},
            {"role": "user", "content": "my name is Zed"},
            {"role": "assistant", "content": "Hello Zed"},
        ]))
        .unwrap();
        let grounding: Vec<GroundedItem> = serde_json::from_value(json!([
            {"name": "Trail shoe", "sku": "T1", "price": "99.000", "currency": "USD", "in_stock": true, "description": ""},
        ]))
        .unwrap();
        let p = build_prompt(&t, &memory, &grounding, "what is my name?");
        assert_eq!(p.len(), 4, "the oversized oldest message is dropped: {p:?}");
        assert!(p[0]
            .content
            .contains("Trail shoe (SKU T1): 99.000 USD, in stock"));
        assert_eq!(p[1].content, "my name is Zed");
        assert_eq!(p[3].content, "what is my name?");
    }
}
