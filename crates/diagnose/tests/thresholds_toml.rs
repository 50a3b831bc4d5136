//! Thresholds read from TOML: any subset overrides the defaults and changes the outcome; unknown keys and bad
//! values are errors that name the key and the line.

mod support;

use infer_doctor_core::Signal;
use infer_doctor_diagnose::{ThresholdError, Thresholds, diagnose};
use support::*;

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(Thresholds::from_toml(""), Ok(Thresholds::default()));
}

#[test]
fn overridden_thresholds_change_the_outcome() {
    let mut evidence = healthy();
    set_gauge(&mut evidence, Signal::KvUsage, 0.85, 0.93);
    set_gauge(&mut evidence, Signal::RequestsWaiting, 5.0, 12.0);
    let fires = diagnose(&evidence, &Thresholds::default());
    assert!(finding(&fires, "capacity.kv_saturated").is_some());

    let relaxed =
        Thresholds::from_toml("# our pods run hot\nkv_saturated = 0.95\nkv_critical = 0.99\n")
            .unwrap();
    assert_eq!(relaxed.kv_saturated, 0.95);
    assert_eq!(
        relaxed.error_rate_warning,
        Thresholds::default().error_rate_warning
    );
    let quiet = diagnose(&evidence, &relaxed);
    assert!(finding(&quiet, "capacity.kv_saturated").is_none());
}

#[test]
fn a_stricter_error_budget_turns_a_pass_into_a_finding() {
    let mut evidence = healthy();
    let requests = &mut client(&mut evidence).requests;
    (requests.ok, requests.failed, requests.error_rate) = (995, 5, 0.005);
    requests.sent = 1000;
    assert!(finding(&diagnose(&evidence, &Thresholds::default()), "errors.rate").is_none());
    let strict = Thresholds::from_toml("error_rate_warning = 0.001").unwrap();
    assert!(finding(&diagnose(&evidence, &strict), "errors.rate").is_some());
}

#[test]
fn an_unknown_key_is_an_error_naming_it_and_its_line() {
    let error = Thresholds::from_toml("kv_saturated = 0.9\n\nkv_saturatd = 0.95\n").unwrap_err();
    let ThresholdError::Parse { line, message } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*line, 3);
    assert!(message.contains("kv_saturatd"), "{message}");
    assert!(error.to_string().contains("line 3"), "{error}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_line() {
    let error = Thresholds::from_toml("prefix_hit_low = 0.3\nttft_high_ms = \"2s\"\n").unwrap_err();
    assert!(
        matches!(error, ThresholdError::Parse { line: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn a_negative_or_nan_value_is_refused_with_its_key() {
    let error = Thresholds::from_toml("kv_full = 0.98\nupstream_ratio = -0.5\n").unwrap_err();
    assert_eq!(
        error,
        ThresholdError::Invalid {
            line: 2,
            key: "upstream_ratio".into(),
            value: -0.5
        }
    );
    assert!(matches!(
        Thresholds::from_toml("kv_full = nan"),
        Err(ThresholdError::Invalid { .. })
    ));
}

#[test]
fn defaults_round_trip_through_serde() {
    let json = serde_json::to_string(&Thresholds::default()).unwrap();
    let back: Thresholds = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Thresholds::default());
}
