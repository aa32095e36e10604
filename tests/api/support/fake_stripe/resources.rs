//! The fake's Stripe semantics: what each resource endpoint does to the stored objects, how
//! objects are shown (an invoice embeds its first lines), paging, search, and form decoding.

use super::*;

/// How many lines Stripe embeds in an invoice; the rest are at `/v1/invoices/{id}/lines`.
pub(super) const EMBEDDED_LINES: usize = 10;

/// An object (or a list of them) as Stripe shows it: an invoice embeds its first ten lines,
/// with `has_more` saying whether there are more.
pub(super) fn present(mut body: Value) -> Value {
    if body["object"] == "list" || body["object"] == "search_result" {
        if let Some(items) = body["data"].as_array_mut() {
            for item in items {
                *item = present(item.take());
            }
        }
        return body;
    }
    if body["object"] == "event" {
        let object = body["data"]["object"].take();
        body["data"]["object"] = present(object);
        super::shapes::complete(&mut body);
        return body;
    }
    if body["object"] == "invoice" {
        // Seeded invoices may keep every line under `all_lines`, embedding only some.
        let all = body["all_lines"].as_array().map(Vec::len);
        if let Some(lines) = body["lines"]["data"].as_array_mut() {
            let total = all.unwrap_or(lines.len()).max(lines.len());
            lines.truncate(EMBEDDED_LINES);
            body["lines"]["has_more"] = json!(total > EMBEDDED_LINES);
            body["lines"]["total_count"] = json!(total);
        }
        if let Some(id) = body["id"].as_str() {
            body["lines"]["url"] = json!(format!("/v1/invoices/{id}/lines"));
        }
        if let Some(map) = body.as_object_mut() {
            map.remove("all_lines");
        }
    }
    super::shapes::complete(&mut body);
    body
}

pub(super) fn path_matches(pattern: &str, path: &str) -> bool {
    let (want, got): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}

pub(super) fn star(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let prefix: String = key.chars().take(8).collect();
    format!("{prefix}****{tail}")
}

pub(super) fn prefix_of(resource: &str) -> &'static str {
    match resource {
        "customers" => "cus",
        "invoices" => "in",
        "invoiceitems" => "ii",
        "webhook_endpoints" => "we",
        "products" => "prod",
        "prices" => "price",
        _ => "obj",
    }
}

pub(super) fn execute(
    s: &mut State,
    account: &str,
    method: &str,
    parts: &[&str],
    params: &Value,
) -> (u16, Value) {
    if parts == ["account"] {
        return (200, s.accounts.get(account).cloned().unwrap_or(Value::Null));
    }
    let resource = parts[0].to_owned();
    if method == "GET" {
        if let Err(refusal) = page_limit(params) {
            return refusal;
        }
    }
    match (method, parts.len()) {
        ("GET", 2) if resource == "customers" && parts[1] == "search" => {
            search_customers(s, account, params)
        }
        ("GET", 1) => {
            let limit = page_limit(params).ok().flatten().unwrap_or(10);
            let after = params["starting_after"].as_str();
            let created_gte: Option<i64> = params["created"]["gte"]
                .as_str()
                .and_then(|g| g.parse().ok());
            let filters: Vec<(&String, &Value)> = params
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, v)| {
                            let paging = ["limit", "starting_after", "expand", "created"]
                                .contains(&k.as_str());
                            let every_status = k.as_str() == "status" && v.as_str() == Some("all");
                            !(paging || every_status)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let matching: Vec<Value> = s
                .objects
                .get(account)
                .and_then(|a| a.get(&resource))
                .map(|m| {
                    m.iter()
                        .rev()
                        .skip_while(|(id, _)| after.is_some_and(|a| id.as_str() >= a))
                        .map(|(_, o)| o)
                        .filter(|o| filters.iter().all(|(k, v)| &&o[k.as_str()] == v))
                        .filter(|o| {
                            created_gte.is_none_or(|gte| o["created"].as_i64().unwrap_or(0) >= gte)
                        })
                        // One more than a page tells whether there are more.
                        .take(limit + 1)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let has_more = matching.len() > limit;
            let data: Vec<Value> = matching.into_iter().take(limit).collect();
            (
                200,
                json!({"object": "list", "data": data, "has_more": has_more, "url": format!("/v1/{resource}")}),
            )
        }
        ("POST", 1) => {
            let id = s.new_id(prefix_of(&resource));
            let mut object = params.clone();
            super::shapes::typed_fields(&mut object);
            object["id"] = json!(id);
            object["object"] = json!(resource.trim_end_matches('s'));
            object["created"] = json!(chrono::Utc::now().timestamp());
            if resource == "invoices" {
                object["status"] = json!("draft");
                object["total"] = json!(0);
                object["amount_due"] = json!(0);
                object["amount_paid"] = json!(0);
                object["amount_remaining"] = json!(0);
                object["lines"] = json!({"object": "list", "data": []});
            }
            if resource == "invoiceitems" {
                let quantity: i64 = params["quantity"]
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1);
                let unit: i64 = params["unit_amount_decimal"]
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(0);
                object["amount"] = json!(quantity * unit);
                object["quantity"] = json!(quantity);
                let invoice = params["invoice"].as_str().unwrap_or_default().to_owned();
                let Some(target) = s
                    .objects
                    .get_mut(account)
                    .and_then(|a| a.get_mut("invoices"))
                    .and_then(|m| m.get_mut(&invoice))
                else {
                    return error(
                        400,
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such invoice: '{invoice}'"),
                        Some("invoice"),
                    );
                };
                if target["status"] != "draft" {
                    return error(
                        400,
                        "invalid_request_error",
                        Some("invoice_not_editable"),
                        "The invoice is not a draft.",
                        Some("invoice"),
                    );
                }
                for field in ["total", "amount_due", "amount_remaining"] {
                    target[field] = json!(target[field].as_i64().unwrap_or(0) + quantity * unit);
                }
                let mut line = object.clone();
                line["id"] = json!(format!("il_{}", id));
                line["object"] = json!("line_item");
                target["lines"]["data"].as_array_mut().unwrap().push(line);
            }
            if resource == "webhook_endpoints" {
                object["status"] = json!("enabled");
                object["secret"] = json!(format!("whsec_fakeSecretFor{}", id.replace('_', "")));
                object["api_version"] = json!("2026-09-30.clover");
            }
            s.indexed_at.insert(id.clone(), std::time::Instant::now());
            s.objects
                .entry(account.to_owned())
                .or_default()
                .entry(resource.clone())
                .or_default()
                .insert(id, object.clone());
            match resource.as_str() {
                "customers" => emit(s, account, "customer.created", &object),
                "invoices" => emit(s, account, "invoice.created", &object),
                "invoiceitems" => {
                    emit(s, account, "invoiceitem.created", &object);
                    let invoice = params["invoice"].as_str().unwrap_or_default();
                    if let Some(target) = s.objects[account]["invoices"].get(invoice).cloned() {
                        emit(s, account, "invoice.updated", &target);
                    }
                }
                _ => {}
            }
            (200, object)
        }
        (_, 2) => {
            let id = parts[1];
            let found = s
                .objects
                .get_mut(account)
                .and_then(|a| a.get_mut(&resource))
                .and_then(|m| m.get_mut(id));
            let Some(object) = found else {
                return error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such {}: '{id}'", resource.trim_end_matches('s')),
                    Some("id"),
                );
            };
            if method == "DELETE" && resource == "invoiceitems" {
                let item = object.clone();
                let invoice = item["invoice"].as_str().unwrap_or_default().to_owned();
                let account_objects = s.objects.get_mut(account).unwrap();
                if let Some(target) = account_objects
                    .get_mut("invoices")
                    .and_then(|m| m.get_mut(&invoice))
                {
                    if target["status"] != "draft" {
                        return error(
                            400,
                            "invalid_request_error",
                            Some("invoice_not_editable"),
                            "The invoice item is on an invoice that is not a draft.",
                            None,
                        );
                    }
                    let amount = item["amount"].as_i64().unwrap_or(0);
                    for field in ["total", "amount_due", "amount_remaining"] {
                        target[field] = json!(target[field].as_i64().unwrap_or(0) - amount);
                    }
                    let line_id = format!("il_{id}");
                    if let Some(lines) = target["lines"]["data"].as_array_mut() {
                        lines.retain(|l| l["id"] != line_id.as_str());
                    }
                }
                account_objects
                    .get_mut("invoiceitems")
                    .map(|m| m.remove(id));
                return (
                    200,
                    json!({"id": id, "object": "invoiceitem", "deleted": true}),
                );
            }
            if method == "DELETE" {
                if object["status"] != "draft" {
                    return error(
                        400,
                        "invalid_request_error",
                        None,
                        "Only draft invoices can be deleted.",
                        None,
                    );
                }
                let deleted = json!({"id": id, "object": "invoice", "deleted": true});
                let gone = s
                    .objects
                    .get_mut(account)
                    .and_then(|a| a.get_mut(&resource))
                    .and_then(|m| m.remove(id));
                if let Some(gone) = gone {
                    // Stripe does not delete a deleted draft's items: they become pending
                    // again, and would be billed on the customer's next invoice.
                    if let Some(items) = s
                        .objects
                        .get_mut(account)
                        .and_then(|a| a.get_mut("invoiceitems"))
                    {
                        for item in items.values_mut().filter(|i| i["invoice"] == id) {
                            item["invoice"] = Value::Null;
                        }
                    }
                    emit(s, account, "invoice.deleted", &gone);
                }
                return (200, deleted);
            }
            if method == "POST" {
                let mut changes = params.clone();
                if let Some(disabled) = changes.as_object_mut().and_then(|m| m.remove("disabled")) {
                    object["status"] = json!(if disabled == "true" {
                        "disabled"
                    } else {
                        "enabled"
                    });
                }
                super::shapes::typed_fields(&mut changes);
                merge(object, &changes);
                let object = object.clone();
                match resource.as_str() {
                    "customers" => emit(s, account, "customer.updated", &object),
                    "invoices" => emit(s, account, "invoice.updated", &object),
                    _ => {}
                }
                return (200, object);
            }
            (200, object.clone())
        }
        ("GET", 3) if resource == "invoices" && parts[2] == "lines" => {
            let Some(invoice) = s
                .objects
                .get(account)
                .and_then(|a| a.get("invoices"))
                .and_then(|m| m.get(parts[1]))
            else {
                return error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such invoice",
                    Some("id"),
                );
            };
            let limit = page_limit(params).ok().flatten().unwrap_or(10);
            let after = params["starting_after"].as_str();
            // Seeded invoices may keep every line under `all_lines`, listing only ten inline.
            let lines: Vec<Value> = invoice["all_lines"]
                .as_array()
                .or(invoice["lines"]["data"].as_array())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut line| {
                    // An invoice's lines are `line_item`s, not the invoice items they came from.
                    line["object"] = json!("line_item");
                    line
                })
                .collect();
            let rest: Vec<Value> = match after {
                Some(a) => lines
                    .iter()
                    .skip_while(|l| l["id"] != a)
                    .skip(1)
                    .cloned()
                    .collect(),
                None => lines,
            };
            let has_more = rest.len() > limit;
            (
                200,
                json!({"object": "list", "data": rest.into_iter().take(limit).collect::<Vec<_>>(), "has_more": has_more,
                       "url": format!("/v1/invoices/{}/lines", parts[1])}),
            )
        }
        ("POST", 3) if resource == "invoices" => invoice_action(s, account, parts[1], parts[2]),
        _ => error(
            404,
            "invalid_request_error",
            None,
            "Unrecognized request URL (fake).",
            None,
        ),
    }
}

pub(super) fn invoice_action(s: &mut State, account: &str, id: &str, action: &str) -> (u16, Value) {
    s.next_id += 1;
    let number = format!("FAKE-{:04}", s.next_id);
    let Some(invoice) = s
        .objects
        .get_mut(account)
        .and_then(|a| a.get_mut("invoices"))
        .and_then(|m| m.get_mut(id))
    else {
        return error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such invoice: '{id}'"),
            Some("id"),
        );
    };
    let now = chrono::Utc::now().timestamp();
    match (action, invoice["status"].as_str()) {
        ("finalize", Some("draft")) => {
            invoice["status"] = json!("open");
            invoice["number"] = json!(number);
            invoice["hosted_invoice_url"] =
                json!(format!("https://invoice.stripe.com/i/acct_fake/{id}"));
            invoice["invoice_pdf"] =
                json!(format!("https://pay.stripe.com/invoice/acct_fake/{id}/pdf"));
            invoice["status_transitions"] = json!({"finalized_at": now});
            let days: i64 = invoice["days_until_due"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .unwrap_or(30);
            invoice["due_date"] = json!(now + days * 86_400);
        }
        ("void", Some("open")) => {
            invoice["status"] = json!("void");
            invoice["status_transitions"]["voided_at"] = json!(now);
        }
        // `POST /v1/invoices/{id}/pay`: an attempt to collect now, out of the retry schedule.
        // Only an open invoice can be paid; the fake's card always succeeds (a decline is a
        // queued fault).
        ("pay", Some("open")) => {
            let due = invoice["amount_remaining"]
                .as_i64()
                .or(invoice["amount_due"].as_i64())
                .unwrap_or(0);
            invoice["status"] = json!("paid");
            invoice["paid"] = json!(true);
            invoice["amount_paid"] = json!(due);
            invoice["amount_remaining"] = json!(0);
            invoice["attempted"] = json!(true);
            invoice["attempt_count"] = json!(invoice["attempt_count"].as_i64().unwrap_or(0) + 1);
            invoice["status_transitions"]["paid_at"] = json!(now);
        }
        ("pay", Some("paid")) => {
            return error(
                400,
                "invalid_request_error",
                Some("invoice_already_paid"),
                "Invoice is already paid",
                None,
            )
        }
        // `POST /v1/invoices/{id}/send`: only for invoices collected by email
        // (`collection_method=send_invoice`); a paid one may be sent again.
        ("send", Some("open" | "paid")) => {
            if invoice["collection_method"] != "send_invoice" {
                return error(
                    400,
                    "invalid_request_error",
                    None,
                    "You can only manually send an invoice if its collection method is 'send_invoice'.",
                    None,
                );
            }
        }
        (_, status) => {
            return error(
                400,
                "invalid_request_error",
                None,
                &format!(
                    "You can't {action} an invoice that is {}.",
                    status.unwrap_or("unknown")
                ),
                None,
            )
        }
    }
    let invoice = invoice.clone();
    let kinds: &[&str] = match action {
        "finalize" => &["invoice.finalized"],
        "pay" => &["invoice.paid", "invoice.payment_succeeded"],
        "send" => &["invoice.sent"],
        _ => &["invoice.voided"],
    };
    for kind in kinds {
        emit(s, account, kind, &invoice);
    }
    (200, invoice)
}

/// Records the event Stripe sends for a change (listable at `/v1/events`), and queues it for the
/// webhook endpoint when there is one.
pub(super) fn emit(s: &mut State, account: &str, kind: &str, object: &Value) {
    let id = s.new_id("evt");
    let event = json!({
        "id": id, "object": "event", "api_version": "2026-09-30.clover",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "type": kind, "data": {"object": present(object.clone())},
    });
    s.objects
        .entry(account.to_owned())
        .or_default()
        .entry("events".to_owned())
        .or_default()
        .insert(id, event.clone());
    if s.webhook.is_some() {
        if s.thin_payloads {
            let related = (
                object["id"].as_str().unwrap_or_default().to_owned(),
                object["object"].as_str().unwrap_or_default().to_owned(),
            );
            let thin = super::v2::thin_event(
                s,
                account,
                &format!("v1.{kind}"),
                Some((&related.0, &related.1)),
            );
            s.outgoing.push(thin);
        } else {
            s.outgoing.push(event);
        }
    }
}

/// A list's `limit`: 1 to 100, as Stripe accepts; `Ok(None)` when not given.
pub(super) fn page_limit(params: &Value) -> Result<Option<usize>, (u16, Value)> {
    let Some(raw) = params["limit"].as_str() else {
        return Ok(None);
    };
    match raw.parse::<usize>() {
        Ok(limit) if (1..=100).contains(&limit) => Ok(Some(limit)),
        _ => Err(error(
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            Some("limit"),
        )),
    }
}

/// `GET /v1/customers/search`: clauses `email:'…'` (any letter case) and `metadata['k']:'v'`,
/// joined by `OR` or `AND`. Objects made within the search lag are not found yet.
pub(super) fn search_customers(s: &mut State, account: &str, params: &Value) -> (u16, Value) {
    let query = params["query"].as_str().unwrap_or_default();
    let any: Vec<&str> = query.split(" OR ").collect();
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    for group in any {
        let mut clauses = Vec::new();
        for clause in group.split(" AND ") {
            let Some((field, value)) = clause.trim().split_once(':') else {
                return invalid_query(query);
            };
            let value = value.trim_matches(|c| c == '\'' || c == '"');
            let field = match field.strip_prefix("metadata[") {
                Some(rest) => format!(
                    "metadata.{}",
                    rest.trim_end_matches(']')
                        .trim_matches(|c| c == '\'' || c == '"')
                ),
                None if field == "email" => "email".to_owned(),
                None => return invalid_query(query),
            };
            clauses.push((field, value.to_owned()));
        }
        groups.push(clauses);
    }
    let limit = page_limit(params).ok().flatten().unwrap_or(10);
    let lag = s.search_lag;
    let visible = |id: &str| s.indexed_at.get(id).is_none_or(|at| at.elapsed() >= lag);
    let matches = |o: &Value| {
        groups.iter().any(|clauses| {
            clauses
                .iter()
                .all(|(field, value)| match field.strip_prefix("metadata.") {
                    Some(key) => o["metadata"][key].as_str() == Some(value.as_str()),
                    None => o["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(value)),
                })
        })
    };
    let found: Vec<Value> = s
        .objects
        .get(account)
        .and_then(|a| a.get("customers"))
        .map(|m| {
            m.iter()
                .rev()
                .filter(|(id, o)| visible(id) && o["deleted"] != true && matches(o))
                .map(|(_, o)| o.clone())
                .collect()
        })
        .unwrap_or_default();
    // Stripe's search pages by an opaque `page` token; this one is the offset.
    let offset: usize = params["page"]
        .as_str()
        .and_then(|p| p.strip_prefix("offset_"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let has_more = found.len() > offset + limit;
    let next_page = has_more.then(|| format!("offset_{}", offset + limit));
    (
        200,
        json!({"object": "search_result",
               "data": found.into_iter().skip(offset).take(limit).collect::<Vec<_>>(),
               "has_more": has_more, "next_page": next_page, "url": "/v1/customers/search"}),
    )
}

pub(super) fn invalid_query(query: &str) -> (u16, Value) {
    error(
        400,
        "invalid_request_error",
        Some("parameter_invalid_string"),
        &format!("The search query `{query}` is not supported (fake)."),
        Some("query"),
    )
}

pub(super) fn merge(target: &mut Value, changes: &Value) {
    if let (Some(target), Some(changes)) = (target.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Parses Stripe's form encoding (`a[b]=1&list[0]=x`) into JSON; every value stays a string.
pub fn parse_form(raw: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_pairs(raw) {
        let mut path: Vec<String> = Vec::new();
        let (head, rest) = key
            .split_once('[')
            .map_or((key.as_str(), ""), |(h, r)| (h, r));
        path.push(head.to_owned());
        for part in rest.split('[') {
            let part = part.trim_end_matches(']');
            if !rest.is_empty() {
                path.push(part.to_owned());
            }
        }
        let mut node = &mut root;
        for (n, segment) in path.iter().enumerate() {
            let last = n + 1 == path.len();
            let next_is_index = path.get(n + 1).is_some_and(|p| p.parse::<usize>().is_ok());
            let child = if let Ok(index) = segment.parse::<usize>() {
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let array = node.as_array_mut().unwrap();
                while array.len() <= index {
                    array.push(Value::Null);
                }
                &mut array[index]
            } else {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                node.as_object_mut()
                    .unwrap()
                    .entry(segment.clone())
                    .or_insert(Value::Null)
            };
            if last {
                *child = Value::String(value.clone());
            } else if child.is_null() {
                *child = if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                };
            }
            node = child;
        }
    }
    root
}

pub(super) fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
