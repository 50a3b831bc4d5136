//! Which names hold secrets (environment variables, argument names, config keys), decided in one place so every
//! reader that keeps such values out of reports and bundles agrees on what a secret is.

/// Whether a variable, key or flag name says its value is a secret. Judged by word, not by substring, so that
/// settings which only count or name tokens stay readable: `HF_TOKEN`, `OPENAI_API_KEY`, `API_KEYS`,
/// `DBPASSWORD` and `AWS_CREDENTIALS` are secrets; `max_num_batched_tokens` and `tokenizer` are not.
pub fn is_secret_name(name: &str) -> bool {
    name.split(['_', '-', '.'])
        .map(str::to_ascii_uppercase)
        .any(|word| {
            ["SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
                .iter()
                .any(|part| word.contains(part))
                || ["KEY", "KEYS", "TOKEN", "APIKEY"]
                    .iter()
                    .any(|end| word.ends_with(end))
        })
}

#[cfg(test)]
mod tests {
    use super::is_secret_name;

    #[test]
    fn secrets_are_named_by_word() {
        for secret in [
            "HF_TOKEN",
            "OPENAI_API_KEY",
            "api-key",
            "API_KEYS",
            "DBPASSWORD",
            "AWS_CREDENTIALS",
            "ssl_keyfile_password",
            "client_secret",
            "VLLM_APIKEY",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for setting in [
            "max_num_batched_tokens",
            "tokenizer",
            "max_tokens",
            "CUDA_VISIBLE_DEVICES",
            "keyboard",
            "NCCL_P2P_DISABLE",
        ] {
            assert!(!is_secret_name(setting), "{setting}");
        }
    }
}
