//! The Stripe client against the fake Stripe over real HTTP: what it retries, what it does not,
//! `Retry-After`, idempotency keys surviving lost answers, and its rate limit.

use std::time::{Duration, Instant};

use billmirror::domain::backoff::Backoff;
use billmirror::domain::Secret;
use billmirror::stripe::{ClientSettings, StripeClient};

use crate::support::fake_stripe::{FakeStripe, Fault, ACCOUNT, SECRET_KEY};

fn settings(fake: &FakeStripe) -> ClientSettings {
    ClientSettings {
        api_base: fake.base_url.clone(),
        timeout: Duration::from_millis(500),
        max_attempts: 5,
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            jitter: true,
        },
        requests_per_second: 0.0,
    }
}

fn client(fake: &FakeStripe, rate: f64) -> StripeClient {
    StripeClient::new(
        Secret::new(SECRET_KEY),
        ClientSettings {
            requests_per_second: rate,
            ..settings(fake)
        },
    )
    .unwrap()
}

fn form(email: &str) -> Vec<(String, String)> {
    vec![
        ("email".into(), email.into()),
        ("metadata[billmirror_id]".into(), "cust_1".into()),
    ]
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_with_the_same_idempotency_key() {
    let fake = FakeStripe::start().await;
    fake.queue_faults(&[Fault::Unavailable, Fault::RateLimited { retry_after: 1 }]);
    let started = Instant::now();
    let customer = client(&fake, 0.0)
        .post("customers", &form("a@example.com"), "bm-key-1")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(customer["email"], "a@example.com");
    assert_eq!(customer["metadata"]["billmirror_id"], "cust_1");
    let calls = fake.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [503, 429, 200]
    );
    assert!(calls
        .iter()
        .all(|c| c.idempotency_key.as_deref() == Some("bm-key-1")));
}

#[tokio::test]
async fn an_answer_lost_after_stripe_did_the_work_creates_nothing_twice() {
    let fake = FakeStripe::start().await;
    fake.queue_faults(&[
        Fault::DropAfterWork,
        Fault::SlowAfterWork {
            delay: Duration::from_secs(2),
        },
    ]);
    let customer = client(&fake, 0.0)
        .post("customers", &form("b@example.com"), "bm-key-2")
        .await
        .unwrap();
    assert_eq!(fake.calls().len(), 3, "dropped, timed out, then replayed");
    let stored = fake.objects(ACCOUNT, "customers");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], customer["id"]);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let fake = FakeStripe::start().await;
    let client = client(&fake, 0.0);
    let missing = client
        .post("customers/cus_nope", &form("c@example.com"), "bm-key-3")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.code(), Some("resource_missing"));

    client
        .post("customers", &form("d@example.com"), "bm-key-4")
        .await
        .unwrap();
    let reused = client
        .post("customers", &form("other@example.com"), "bm-key-4")
        .await
        .unwrap_err();
    assert_eq!(reused.status(), Some(400), "same key, other parameters");
    assert_eq!(fake.calls().len(), 3, "one call each: {:?}", fake.calls());
}

#[tokio::test]
async fn errors_never_carry_the_key() {
    let fake = FakeStripe::start().await;
    let stranger = StripeClient::new(
        Secret::new("sk_test_51StrangerKeyWithSecretPart0000000"),
        ClientSettings {
            api_base: fake.base_url.clone(),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(1),
                jitter: true,
            },
            requests_per_second: 0.0,
        },
    )
    .unwrap();
    let error = stranger.get("account", &[]).await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("StrangerKeyWith"), "{shown}");
}

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let fake = FakeStripe::start().await;
    let client = client(&fake, 20.0);
    let started = Instant::now();
    for _ in 0..11 {
        client
            .get("customers", &[("limit", "1".into())])
            .await
            .unwrap();
    }
    // 11 requests at 20/s: the last leaves 10 × 50 ms after the first.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_create_lands_once_while_a_third_of_calls_fail() {
    let fake = FakeStripe::start().await;
    fake.set_fault_rate(
        0.3,
        &[
            Fault::Unavailable,
            Fault::RateLimited { retry_after: 0 },
            Fault::DropAfterWork,
            Fault::SlowAfterWork {
                delay: Duration::from_millis(700),
            },
        ],
    );
    let client = StripeClient::new(
        Secret::new(SECRET_KEY),
        ClientSettings {
            max_attempts: 12,
            ..settings(&fake)
        },
    )
    .unwrap();
    for n in 0..40 {
        client
            .post(
                "customers",
                &form(&format!("{n}@example.com")),
                &format!("bm-many-{n}"),
            )
            .await
            .unwrap_or_else(|e| panic!("create {n}: {e}"));
    }
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.status != 200),
        "faults were injected"
    );
    assert_eq!(fake.objects(ACCOUNT, "customers").len(), 40);
}

#[tokio::test]
async fn after_24_hours_a_key_no_longer_protects_against_a_second_create() {
    // Why the push worker searches by metadata before creating after a long outage.
    let fake = FakeStripe::start().await;
    let client = client(&fake, 0.0);
    client
        .post("customers", &form("e@example.com"), "bm-old")
        .await
        .unwrap();
    client
        .post("customers", &form("e@example.com"), "bm-old")
        .await
        .unwrap();
    assert_eq!(fake.objects(ACCOUNT, "customers").len(), 1);
    fake.forget_idempotency_keys();
    client
        .post("customers", &form("e@example.com"), "bm-old")
        .await
        .unwrap();
    assert_eq!(fake.objects(ACCOUNT, "customers").len(), 2);
    assert_eq!(
        fake.calls()[0].params["metadata"]["billmirror_id"],
        "cust_1"
    );
}

#[tokio::test]
async fn a_concurrent_request_with_the_same_key_gets_stripes_conflict_and_creates_nothing() {
    let fake = FakeStripe::start().await;
    fake.set_processing_delay(Duration::from_millis(300));
    let client = client(&fake, 0.0);
    let params = form("f@example.com");
    let first = client.post("customers", &params, "bm-same");
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.post("customers", &params, "bm-same").await
    };
    let (first, second) = tokio::join!(first, second);
    let created = first.unwrap();
    let conflict = second.unwrap_err();
    assert_eq!(conflict.status(), Some(409));
    assert_eq!(conflict.code(), Some("idempotency_key_in_use"));
    // Once the first is done, the key answers with its result.
    let replayed = client
        .post("customers", &form("f@example.com"), "bm-same")
        .await
        .unwrap();
    assert_eq!(replayed["id"], created["id"]);
    assert_eq!(fake.objects(ACCOUNT, "customers").len(), 1);
}

/// async-stripe's typed requests go through our transport: the same retries (503, then 429 with
/// `Retry-After`) under the one idempotency key given, the form Stripe's spec defines, the API
/// version async-stripe's types describe, and a typed answer.
#[tokio::test]
async fn typed_requests_are_sent_through_our_retries_and_idempotency_keys() {
    use billmirror::stripe::typed;
    use stripe_core::customer::CreateCustomer;
    let fake = FakeStripe::start().await;
    fake.queue_faults(&[Fault::Unavailable, Fault::RateLimited { retry_after: 1 }]);
    let request =
        CreateCustomer::new()
            .email("typed@example.com")
            .metadata(std::collections::HashMap::from([(
                "billmirror_id".to_owned(),
                "cust_typed".to_owned(),
            )]));
    let started = Instant::now();
    let customer = typed::send(&client(&fake, 0.0), &request, Some("bm-typed-1"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(customer.email.as_deref(), Some("typed@example.com"));
    assert_eq!(
        customer
            .metadata
            .as_ref()
            .and_then(|m| m.get("billmirror_id")),
        Some(&"cust_typed".to_owned())
    );
    let calls = fake.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [503, 429, 200]
    );
    assert!(calls
        .iter()
        .all(|c| c.path == "/v1/customers" && c.method == "POST"));
    assert!(calls
        .iter()
        .all(|c| c.idempotency_key.as_deref() == Some("bm-typed-1")));
    assert!(calls
        .iter()
        .all(|c| c.stripe_version.as_deref() == Some(typed::API_VERSION)));
}

/// An answer whose fields do not have the types Stripe documents is refused, naming the type and
/// the call, not read half-way.
#[tokio::test]
async fn a_typed_answer_of_another_shape_is_refused_by_name() {
    use billmirror::stripe::typed;
    use stripe_billing::invoice::RetrieveInvoice;
    let fake = FakeStripe::start().await;
    let customer = client(&fake, 0.0)
        .post("customers", &form("thin@example.com"), "bm-thin-0")
        .await
        .unwrap();
    // The fake completes what a seeded object lacks, but keeps what it has: a line whose
    // amount is text is not a shape Stripe sends.
    fake.seed(
        ACCOUNT,
        "invoices",
        vec![serde_json::json!({"id": "in_1Thin", "object": "invoice",
            "customer": customer["id"], "total": 100,
            "lines": {"object": "list", "data": [{"id": "il_1", "object": "line_item",
                "amount": "one hundred"}]}})],
    );
    let error = typed::send(&client(&fake, 0.0), &RetrieveInvoice::new("in_1Thin"), None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("GET /v1/invoices/{id}"), "{error}");
    assert!(error.contains("async-stripe's Invoice"), "{error}");
}

/// Through async-stripe's own `send` (its `StripeClient` trait, implemented by ours): the key of
/// `RequestStrategy::Idempotent` is the one sent, and a repeat is Stripe's replay.
#[tokio::test]
async fn the_stripe_client_trait_sends_the_idempotent_strategys_key() {
    use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
    use stripe_core::customer::{RetrieveCustomer, RetrieveCustomerReturned};
    let fake = FakeStripe::start().await;
    let client = client(&fake, 0.0);
    let created = client
        .post("customers", &form("trait@example.com"), "bm-trait-0")
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    fake.queue_faults(&[Fault::Unavailable]);
    let strategy = RequestStrategy::Idempotent(IdempotencyKey::new("bm-trait-1").unwrap());
    let outcome = RetrieveCustomer::new(id.as_str())
        .customize()
        .request_strategy(strategy)
        .send(&client)
        .await;
    let calls = fake.calls();
    assert_eq!(
        calls.iter().skip(1).map(|c| c.status).collect::<Vec<_>>(),
        [503, 200]
    );
    assert!(calls
        .iter()
        .skip(1)
        .all(|c| c.path == format!("/v1/customers/{id}")));
    // The transport worked (503 retried under the one key, then 200), and the fake's customer
    // has every field Stripe documents, so async-stripe's typed `Customer` reads it.
    match outcome.unwrap_or_else(|e| panic!("typed Customer: {e}")) {
        RetrieveCustomerReturned::Customer(customer) => {
            assert_eq!(customer.id.as_str(), id);
            assert_eq!(customer.email.as_deref(), Some("trait@example.com"));
        }
        RetrieveCustomerReturned::DeletedCustomer(_) => panic!("the customer is not deleted"),
    }
}
