//! Window arithmetic over scraped samples that reproduces PromQL (Prometheus 2.42) exactly.
//! Lets infer-doctor compute rates and quantiles from its own samples without a Prometheus server.
