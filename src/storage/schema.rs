// The portable schema for both backends, kept in step with `migrations/{sqlite,postgres}` by hand;
// `tests/api/storage.rs` fails when a migration and this file disagree.

diesel::table! {
    api_tokens (id) {
        id -> Text,
        name -> Text,
        role -> Text,
        token_hash -> Text,
        token_hint -> Text,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        subject -> Text,
        details -> Text,
    }
}

diesel::table! {
    connections (id) {
        id -> Text,
        name -> Text,
        mode -> Text,
        origin -> Text,
        status -> Text,
        stripe_account_id -> Nullable<Text>,
        publishable_key -> Nullable<Text>,
        secret_key_enc -> Nullable<Text>,
        secret_key_hint -> Nullable<Text>,
        can_push -> Bool,
        last_report -> Nullable<Text>,
        last_report_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        disconnected_at -> Nullable<Timestamp>,
        key_status -> Text,
        secret_key_fingerprint -> Nullable<Text>,
        auth -> Text,
        refresh_token_enc -> Nullable<Text>,
        access_expires_at -> Nullable<Timestamp>,
        token_version -> Integer,
        refresh_claimed_until -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_states (state_hash) {
        state_hash -> Text,
        user_id -> Text,
        session_hash -> Text,
        flow -> Text,
        mode -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_secrets (id) {
        id -> Text,
        connection_id -> Text,
        secret_enc -> Text,
        secret_hint -> Text,
        status -> Text,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
        last_matched_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        connection_id -> Text,
        stripe_event_id -> Text,
        event_type -> Text,
        api_version -> Nullable<Text>,
        livemode -> Bool,
        stripe_created -> Timestamp,
        object_id -> Nullable<Text>,
        payload -> Text,
        source -> Text,
        signed_with -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        next_attempt_at -> Timestamp,
        received_at -> Timestamp,
        applied_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_rejections (id) {
        id -> Text,
        connection_id -> Text,
        reason -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    customers (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        email -> Nullable<Text>,
        email_normalized -> Nullable<Text>,
        name -> Nullable<Text>,
        deleted -> Bool,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    products (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        name -> Nullable<Text>,
        active -> Bool,
        deleted -> Bool,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    prices (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        stripe_product_id -> Nullable<Text>,
        nickname -> Nullable<Text>,
        unit_amount -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        billing_interval -> Nullable<Text>,
        interval_count -> Nullable<Integer>,
        active -> Bool,
        deleted -> Bool,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        stripe_customer_id -> Nullable<Text>,
        status -> Text,
        stripe_price_id -> Nullable<Text>,
        stripe_product_id -> Nullable<Text>,
        plan_name -> Nullable<Text>,
        billing_interval -> Nullable<Text>,
        interval_count -> Nullable<Integer>,
        quantity -> Nullable<BigInt>,
        amount -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        current_period_start -> Nullable<Timestamp>,
        current_period_end -> Nullable<Timestamp>,
        cancel_at_period_end -> Bool,
        cancel_at -> Nullable<Timestamp>,
        canceled_at -> Nullable<Timestamp>,
        ended_at -> Nullable<Timestamp>,
        trial_end -> Nullable<Timestamp>,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    invoices (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Nullable<Text>,
        origin -> Text,
        number -> Nullable<Text>,
        stripe_customer_id -> Nullable<Text>,
        customer_email -> Nullable<Text>,
        customer_email_normalized -> Nullable<Text>,
        customer_name -> Nullable<Text>,
        stripe_subscription_id -> Nullable<Text>,
        currency -> Text,
        total -> BigInt,
        amount_due -> BigInt,
        amount_paid -> BigInt,
        amount_remaining -> BigInt,
        status -> Text,
        due_date -> Nullable<Timestamp>,
        memo -> Nullable<Text>,
        hosted_invoice_url -> Nullable<Text>,
        pay_token -> Nullable<Text>,
        attempt_count -> Integer,
        next_payment_attempt -> Nullable<Timestamp>,
        last_payment_error -> Nullable<Text>,
        sync_state -> Text,
        sync_error -> Nullable<Text>,
        finalized_at -> Nullable<Timestamp>,
        paid_at -> Nullable<Timestamp>,
        voided_at -> Nullable<Timestamp>,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    invoice_lines (id) {
        id -> Text,
        invoice_id -> Text,
        stripe_id -> Nullable<Text>,
        line_no -> Integer,
        description -> Text,
        quantity -> BigInt,
        unit_amount -> Nullable<BigInt>,
        amount -> BigInt,
        currency -> Text,
        stripe_price_id -> Nullable<Text>,
        period_start -> Nullable<Timestamp>,
        period_end -> Nullable<Timestamp>,
    }
}

diesel::table! {
    payments (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        payment_intent_id -> Nullable<Text>,
        charge_id -> Nullable<Text>,
        stripe_customer_id -> Nullable<Text>,
        stripe_invoice_id -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        failure_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        method_type -> Nullable<Text>,
        card_brand -> Nullable<Text>,
        card_last4 -> Nullable<Text>,
        amount_refunded -> BigInt,
        disputed -> Bool,
        description -> Nullable<Text>,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    refunds (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        charge_id -> Nullable<Text>,
        payment_intent_id -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        reason -> Nullable<Text>,
        status -> Text,
        failure_reason -> Nullable<Text>,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    disputes (id) {
        id -> Text,
        connection_id -> Text,
        stripe_id -> Text,
        charge_id -> Nullable<Text>,
        payment_intent_id -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        reason -> Nullable<Text>,
        status -> Text,
        evidence_due_by -> Nullable<Timestamp>,
        stripe_created -> Nullable<Timestamp>,
        observed_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        kind -> Text,
        subject_id -> Text,
        connection_id -> Text,
        status -> Text,
        attempts -> Integer,
        run_after -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        payload -> Nullable<Text>,
        dedupe_key -> Text,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        request_hash -> Text,
        resource_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sync_cursors (connection_id, resource) {
        connection_id -> Text,
        resource -> Text,
        cursor -> Nullable<Text>,
        completed -> Bool,
        objects_seen -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    ledger_folds (ledger_key) {
        ledger_key -> Text,
        fold -> Nullable<Text>,
    }
}

diesel::table! {
    ledger_fold_snapshots (ledger_key, events) {
        ledger_key -> Text,
        events -> BigInt,
        created -> BigInt,
        fold -> Text,
    }
}

diesel::table! {
    ledger_event_keys (ledger_key, event_id) {
        ledger_key -> Text,
        event_id -> Text,
    }
}

diesel::table! {
    stripe_key_epochs (key_base) {
        key_base -> Text,
        epoch -> Integer,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    payment_attempts (id) {
        id -> Text,
        connection_id -> Text,
        payment_stripe_id -> Text,
        charge_id -> Text,
        status -> Text,
        amount -> BigInt,
        currency -> Text,
        failure_code -> Nullable<Text>,
        decline_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        method_type -> Nullable<Text>,
        card_brand -> Nullable<Text>,
        card_last4 -> Nullable<Text>,
        stripe_created -> Nullable<Timestamp>,
    }
}

diesel::table! {
    invoice_pdfs (invoice_id) {
        invoice_id -> Text,
        url -> Text,
    }
}

diesel::table! {
    incomplete_invoice_lines (invoice_id) {
        invoice_id -> Text,
        connection_id -> Text,
        stripe_invoice_id -> Text,
        known_lines -> Integer,
    }
}

diesel::table! {
    reconcile_runs (id) {
        id -> Text,
        connection_id -> Text,
        status -> Text,
        repair -> Bool,
        report -> Text,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_channels (id) {
        id -> Text,
        kind -> Text,
        name -> Text,
        secret_enc -> Text,
        secret_hint -> Text,
        target -> Nullable<Text>,
        api_base -> Nullable<Text>,
        redaction -> Text,
        rate_per_minute -> Integer,
        status -> Text,
        broken_reason -> Nullable<Text>,
        last_ok_at -> Nullable<Timestamp>,
        last_failure_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        next_send_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_rules (id) {
        id -> Text,
        name -> Text,
        channel_id -> Text,
        families -> Text,
        connection_ids -> Nullable<Text>,
        mode -> Text,
        min_amount -> Nullable<BigInt>,
        min_currency -> Nullable<Text>,
        redaction -> Nullable<Text>,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_deliveries (id) {
        id -> Text,
        dedupe_key -> Text,
        kind -> Text,
        channel_id -> Text,
        rule_id -> Nullable<Text>,
        connection_id -> Nullable<Text>,
        event_id -> Nullable<Text>,
        family -> Nullable<Text>,
        subject -> Nullable<Text>,
        amount -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        facts -> Text,
        redaction -> Nullable<Text>,
        occurred_at -> Timestamp,
        status -> Text,
        digest_id -> Nullable<Text>,
        members -> Integer,
        provider_message_id -> Nullable<Text>,
        thread_ts -> Nullable<Text>,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_interactivity (channel_id) {
        channel_id -> Text,
        signing_secret_enc -> Text,
        signing_secret_hint -> Text,
        escalation_channel_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_slack_users (slack_user_id) {
        slack_user_id -> Text,
        role -> Text,
        name -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    notify_chat_actions (id) {
        id -> Text,
        dedupe_key -> Text,
        action -> Text,
        delivery_id -> Text,
        channel_id -> Text,
        connection_id -> Nullable<Text>,
        slack_user_id -> Text,
        slack_user_name -> Nullable<Text>,
        role -> Text,
        response_url -> Nullable<Text>,
        status -> Text,
        result -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    customer_follow_ups (id) {
        id -> Text,
        connection_id -> Text,
        customer_id -> Text,
        kind -> Text,
        invoice_id -> Nullable<Text>,
        actor -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    notify_rules_version (id) {
        id -> Integer,
        version -> Text,
    }
}

diesel::table! {
    notify_ops_alerts (alert_key) {
        alert_key -> Text,
        firing -> Bool,
        detail -> Nullable<Text>,
        changed_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        password_changed_at -> Timestamp,
        last_sign_in_at -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    web_sessions (id_hash) {
        id_hash -> Text,
        user_id -> Text,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    sign_in_failures (id) {
        id -> Text,
        subject -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    sidebar_keys (id) {
        id -> Text,
        key_hash -> Text,
        key_hint -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    connection_drafts (id) {
        id -> Text,
        session_hash -> Text,
        publishable_key -> Nullable<Text>,
        secret_key_enc -> Nullable<Text>,
        webhook_secret_enc -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(invoice_lines -> invoices (invoice_id));
diesel::joinable!(web_sessions -> users (user_id));
diesel::joinable!(ledger_event_keys -> webhook_events (event_id));
diesel::joinable!(notify_rules -> notify_channels (channel_id));
diesel::joinable!(notify_interactivity -> notify_channels (channel_id));

diesel::allow_tables_to_appear_in_same_query!(
    ledger_event_keys,
    ledger_folds,
    ledger_fold_snapshots,
    api_tokens,
    audit_log,
    connections,
    webhook_secrets,
    webhook_events,
    webhook_rejections,
    customers,
    products,
    prices,
    subscriptions,
    invoices,
    invoice_lines,
    incomplete_invoice_lines,
    invoice_pdfs,
    payments,
    payment_attempts,
    refunds,
    disputes,
    jobs,
    idempotency_keys,
    sync_cursors,
    stripe_key_epochs,
    reconcile_runs,
    notify_channels,
    notify_rules,
    notify_deliveries,
    notify_interactivity,
    notify_slack_users,
    notify_chat_actions,
    customer_follow_ups,
    notify_ops_alerts,
    notify_rules_version,
    users,
    web_sessions,
    sign_in_failures,
    sidebar_keys,
    connection_drafts,
    oauth_states,
);
