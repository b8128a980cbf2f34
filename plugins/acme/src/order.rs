//! An order from first request to downloaded chain (RFC 8555 §7.4), as a state machine the
//! daemon drives through `issue` and `poll`.
//!
//! Contract:
//! - [`advance`] looks at the order as the CA has it and does the next thing: publish the
//!   challenge responses and tell the CA to look, wait for validation, finalize with the
//!   daemon's CSR, wait for issuance, download the chain. It returns `Issued`, or `Pending`
//!   with the [`OrderState`] and how long to wait (the CA's `Retry-After` where it gives one).
//! - What was published is in the state before the CA is told to look, and is withdrawn once
//!   the authorisations are done with, whatever their outcome.
//! - The CA asking to come back later (rate limits) is a pending outcome with its wait, not
//!   an error. An order the CA has forgotten (404, e.g. after a CA restart) is replaced by a
//!   new one for the same CSR; so is one that went invalid, after its failure has been
//!   reported once as an error (the failed order's URL is remembered in host state, since an
//!   error does not save the order state).
//! - The account the CA does not know (any more) is found or registered again, once per call.
//! - An order state that does not parse is reported in the journal, naming what did not
//!   parse, and replaced by a new order for the same CSR ([`read_state`]).

use certvakt_plugin_api::{Host, IssueOutcome, LogLevel, OrderContext, PluginError};
use certvakt_plugin_common::state;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::challenge::{self, Published};
use crate::client::{Account, Answer, CaCache, Client, Failure, Signer};
use crate::jws::b64;
use crate::settings::{Challenge, Settings};

/// Seconds before the first poll while the CA validates or issues without saying how long;
/// later polls wait a quarter of the time waited so far, up to [`MAX_POLL_SECS`].
pub const POLL_SECS: u64 = 1;
/// The longest wait between two polls of an order.
pub const MAX_POLL_SECS: u64 = 60;
/// How long an order may stay pending or processing after the CA was told to look before it
/// counts as stuck: reported, and replaced by a new order.
pub const STUCK_SECS: i64 = 3_600;
/// Status changes followed within one call before handing back to the daemon.
const TRANSITIONS_PER_CALL: usize = 6;
/// Host state key of the last order reported as failed.
const FAILED_ORDER: &str = "failed_order";

/// What a pending order carries between calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The order URL.
    pub order: String,
    /// Responses published for this order, to withdraw.
    #[serde(default)]
    pub published: Vec<Published>,
    /// When the CA may be told to look (after `dns_wait`), Unix seconds.
    #[serde(default)]
    pub respond_at: i64,
    /// Whether the CA has been told to look.
    #[serde(default)]
    pub responded: bool,
    /// When the CA was told to look (or the order found past that), Unix seconds.
    #[serde(default)]
    pub responded_at: i64,
}

/// The order object (RFC 8555 §7.1.3).
#[derive(Debug, Deserialize)]
struct Order {
    status: String,
    #[serde(default)]
    authorizations: Vec<String>,
    finalize: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    error: Option<crate::client::Problem>,
}

/// The authorization object (RFC 8555 §7.1.4).
#[derive(Debug, Deserialize)]
struct Authorization {
    status: String,
    identifier: Identifier,
    #[serde(default)]
    challenges: Vec<AcmeChallenge>,
    #[serde(default)]
    wildcard: bool,
}

#[derive(Debug, Deserialize)]
struct Identifier {
    value: String,
}

#[derive(Debug, Deserialize)]
struct AcmeChallenge {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<crate::client::Problem>,
}

/// Takes the order one or more steps further.
pub fn advance(
    host: Host<'_>,
    cache: &CaCache,
    order: &OrderContext,
    settings: &Settings,
) -> Result<IssueOutcome, PluginError> {
    let mut state = read_state(&host, &order.state);
    let client = Client::new(host, settings, cache).map_err(Failure::into_error)?;
    let mut result = drive(&client, order, &mut state);
    if let Err(Failure::NoAccount(why)) = &result {
        host.warn(format!("{why}; looking the account up again"));
        client.forget_account().map_err(Failure::into_error)?;
        result = drive(&client, order, &mut state);
    }
    client.finish();
    let pending = |after: u64, state: &Option<OrderState>| IssueOutcome::Pending {
        poll_after_secs: after.max(POLL_SECS),
        task: None,
        state: state
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null),
    };
    match result {
        Ok(Step::Issued(chain_pem)) => Ok(IssueOutcome::Issued { chain_pem }),
        Ok(Step::Wait(after)) => Ok(pending(after, &state)),
        Err(Failure::Later { after_secs, why }) => {
            host.log_with(
                LogLevel::Warn,
                format!("{why}; asking again in {after_secs}s"),
                &[("retry_after", &after_secs.to_string())],
            );
            Ok(pending(after_secs, &state))
        }
        Err(other) => Err(other.into_error()),
    }
}

/// The order the run's state points to; `None` places a new one.
///
/// A state that does not parse also places a new one, unlike the plugins whose state is a
/// journal of changes at an authority (there, such a state stops the run): an ACME order is
/// safe to redo. The key and the CSR are the run's own and stay the same; the order the state
/// pointed to expires at the CA unused; at worst the CA issues a second certificate for the
/// same key, which costs one order of its rate limits. What cannot be redone is the withdrawal
/// of the responses that order published, listed only in the state: the warning says where to
/// look (the responder forgets its own within an hour).
fn read_state(host: &Host<'_>, value: &Value) -> Option<OrderState> {
    match state::parse::<Option<OrderState>>(value) {
        Ok(order) => order,
        Err(unreadable) => {
            host.log_with(
                LogLevel::Warn,
                format!(
                    "the state of this run's ACME order does not parse ({unreadable}): it was \
                     written by another version of the acme plugin, or it is damaged. Placing a \
                     new order for the same CSR; certvakt cannot withdraw the challenge \
                     responses the old order published: remove any left behind by hand (files \
                     under the webroot's .well-known/acme-challenge/, _acme-challenge TXT \
                     records)"
                ),
                &[],
            );
            None
        }
    }
}

enum Step {
    Issued(String),
    Wait(u64),
}

fn drive(
    client: &Client<'_>,
    context: &OrderContext,
    state: &mut Option<OrderState>,
) -> Result<Step, Failure> {
    let host = client.host;
    let account = client.account()?;
    let failed = host.state_get(FAILED_ORDER)?;
    if let Some(current) = state.as_ref()
        && failed.as_ref().and_then(Value::as_str) == Some(current.order.as_str())
    {
        host.info("the last order failed (reported before); placing a new one");
        *state = None;
    }
    for _ in 0..TRANSITIONS_PER_CALL {
        let Some(current) = state.as_mut() else {
            *state = Some(new_order(client, &account, context)?);
            continue;
        };
        let (order, answer) = match client.post(&current.order, None, Signer::Account(&account)) {
            Ok(answer) => (answer.json::<Order>("order")?, answer),
            Err(Failure::Gone(why)) => {
                host.warn(format!(
                    "{why}; the CA has forgotten the order, placing a new one"
                ));
                *state = None;
                continue;
            }
            Err(other) => return Err(other),
        };
        let now = host.now()?;
        let waited = if current.responded_at > 0 {
            now - current.responded_at
        } else {
            0
        };
        let wait = answer.retry_after.unwrap_or_else(|| {
            (u64::try_from(waited).unwrap_or(0) / 4).clamp(POLL_SECS, MAX_POLL_SECS)
        });
        if current.responded
            && current.responded_at > 0
            && waited > STUCK_SECS
            && matches!(order.status.as_str(), "pending" | "processing")
        {
            challenge::withdraw(&host, &client.settings.challenge, &current.published);
            let reason = format!(
                "it has been {} for {} minutes after the CA was asked to validate",
                order.status,
                waited / 60
            );
            return Err(fail(client, &current.order, reason));
        }
        match order.status.as_str() {
            "pending" if !current.responded => {
                let after = authorize(client, &account, &order, current)?;
                return Ok(Step::Wait(after.unwrap_or(POLL_SECS)));
            }
            "pending" => {
                if let Some(problem) = failed_authorization(client, &account, &order)? {
                    challenge::withdraw(&host, &client.settings.challenge, &current.published);
                    return Err(fail(client, &current.order, problem));
                }
                return Ok(Step::Wait(wait));
            }
            "ready" => {
                challenge::withdraw(&host, &client.settings.challenge, &current.published);
                current.published.clear();
                if current.responded_at == 0 {
                    // Every name was validated before (authorisations reused): the clock
                    // for a stuck order starts at finalize.
                    current.responded = true;
                    current.responded_at = now;
                }
                let csr = pem::parse(&context.csr_pem).map_err(|e| {
                    PluginError::permanent(format!("the daemon's CSR is not PEM: {e}"))
                })?;
                client.post(
                    &order.finalize,
                    Some(&json!({"csr": b64(csr.contents())})),
                    Signer::Account(&account),
                )?;
                host.info("finalized the order with the new key's CSR");
            }
            "processing" => return Ok(Step::Wait(wait)),
            "valid" => {
                challenge::withdraw(&host, &client.settings.challenge, &current.published);
                current.published.clear();
                let Some(url) = order.certificate else {
                    return Err(PluginError::permanent(
                        "the CA says the order is valid but gives no certificate URL",
                    )
                    .into());
                };
                let chain = download(client, &account, &url)?;
                return Ok(Step::Issued(chain));
            }
            "invalid" => {
                challenge::withdraw(&host, &client.settings.challenge, &current.published);
                let problem = match failed_authorization(client, &account, &order)? {
                    Some(problem) => problem,
                    None => order
                        .error
                        .as_ref()
                        .map(crate::client::Problem::describe)
                        .unwrap_or_else(|| "the CA gives no reason".into()),
                };
                return Err(fail(client, &current.order, problem));
            }
            other => {
                return Err(PluginError::permanent(format!(
                    "the CA reports the order {} as {other:?}, which ACME does not define",
                    current.order
                ))
                .into());
            }
        }
    }
    Ok(Step::Wait(POLL_SECS))
}

/// Places an order for the configured names; with renewal information, marked as replacing
/// the certificate in use (RFC 9773 §5), and placed again without the mark if the CA will
/// not take it (the certificate was replaced already, or issued elsewhere).
fn new_order(
    client: &Client<'_>,
    account: &Account,
    context: &OrderContext,
) -> Result<OrderState, Failure> {
    let identifiers: Vec<Value> = client
        .settings
        .domains
        .iter()
        .map(|d| json!({"type": "dns", "value": d}))
        .collect();
    let replaces = match (&client.directory.renewal_info, &context.certificate.current) {
        (Some(_), Some(current)) => crate::renewal_info::cert_id(current).ok().flatten(),
        _ => None,
    };
    let mut payload = json!({"identifiers": identifiers});
    if let Some(id) = &replaces {
        payload["replaces"] = json!(id);
    }
    let placed = client.post(
        &client.directory.new_order,
        Some(&payload),
        Signer::Account(account),
    );
    let answer = match placed {
        Err(Failure::Error(error)) if replaces.is_some() => {
            client.host.warn(format!(
                "the CA refused the order as a replacement ({error}); ordering without replaces"
            ));
            client.post(
                &client.directory.new_order,
                Some(&json!({"identifiers": identifiers})),
                Signer::Account(account),
            )?
        }
        other => other?,
    };
    let url = answer.location("the new order")?;
    client.host.log_with(
        LogLevel::Info,
        format!("placed an order for {}", client.settings.domains.join(", ")),
        &[("order", &url)],
    );
    Ok(OrderState {
        order: url,
        ..OrderState::default()
    })
}

/// Publishes a response for every pending authorisation and, unless `dns_wait` says to wait
/// first, tells the CA to look. Returns how long to wait before the CA may be told.
fn authorize(
    client: &Client<'_>,
    account: &Account,
    order: &Order,
    state: &mut OrderState,
) -> Result<Option<u64>, Failure> {
    let host = client.host;
    let how = &client.settings.challenge;
    let now = host.now()?;
    if state.published.is_empty() {
        for url in &order.authorizations {
            let authz: Authorization = client
                .post(url, None, Signer::Account(account))?
                .json("authorization")?;
            if authz.status != "pending" {
                continue;
            }
            let domain = if authz.wildcard {
                format!("*.{}", authz.identifier.value)
            } else {
                authz.identifier.value.clone()
            };
            let Some(offered) = authz.challenges.iter().find(|c| c.kind == how.kind()) else {
                let offered: Vec<&str> = authz.challenges.iter().map(|c| c.kind.as_str()).collect();
                return Err(PluginError::configuration(format!(
                    "the CA offers {} for {domain}, not {}; change challenge",
                    offered.join(", "),
                    how.kind()
                ))
                .into());
            };
            match challenge::publish(
                &host,
                how,
                &account.key,
                &domain,
                &offered.token,
                &offered.url,
            ) {
                Ok(published) => state.published.push(published),
                Err(e) => {
                    // An error does not save the state: take back what this call published.
                    challenge::withdraw(&host, how, &state.published);
                    state.published.clear();
                    return Err(e.into());
                }
            }
        }
        if let Challenge::Dns01 { wait_secs, .. } = how {
            state.respond_at = now + i64::try_from(*wait_secs).unwrap_or(0);
        }
    }
    if now < state.respond_at {
        let after = u64::try_from(state.respond_at - now).unwrap_or(POLL_SECS);
        return Ok(Some(after));
    }
    for published in &state.published {
        client.post(&published.url, Some(&json!({})), Signer::Account(account))?;
    }
    state.responded = true;
    state.responded_at = now;
    Ok(None)
}

/// The first invalid authorisation's reason, if any.
fn failed_authorization(
    client: &Client<'_>,
    account: &Account,
    order: &Order,
) -> Result<Option<String>, Failure> {
    for url in &order.authorizations {
        let authz: Authorization = client
            .post(url, None, Signer::Account(account))?
            .json("authorization")?;
        if authz.status == "invalid" {
            let why = authz
                .challenges
                .iter()
                .find(|c| c.status == "invalid")
                .and_then(|c| c.error.as_ref())
                .map(crate::client::Problem::describe)
                .unwrap_or_else(|| "the CA gives no reason".into());
            return Ok(Some(format!(
                "validation of {} failed: {why}",
                authz.identifier.value
            )));
        }
    }
    Ok(None)
}

/// Remembers `order` as reported, so the next call starts a new one, and returns the error.
fn fail(client: &Client<'_>, order: &str, reason: String) -> Failure {
    if let Err(e) = client.host.state_put(FAILED_ORDER, json!(order)) {
        return Failure::Error(e.into());
    }
    Failure::Error(PluginError::temporary(format!(
        "the ACME order {order} failed: {reason}; a new order is placed at the next attempt"
    )))
}

/// Downloads the chain, choosing among alternates by `preferred_chain`.
fn download(client: &Client<'_>, account: &Account, url: &str) -> Result<String, Failure> {
    let fetch = |url: &str| -> Result<(String, Answer), Failure> {
        let answer = client.post_with(
            url,
            None,
            Signer::Account(account),
            &[("accept", "application/pem-certificate-chain")],
        )?;
        let text = String::from_utf8(answer.response.body.clone()).map_err(|_| {
            PluginError::permanent(format!("the certificate chain at {url} is not text"))
        })?;
        Ok((text, answer))
    };
    let (default, answer) = fetch(url)?;
    let Some(preferred) = &client.settings.preferred_chain else {
        return Ok(default);
    };
    if top_issuer(&default).as_deref() == Some(preferred.as_str()) {
        return Ok(default);
    }
    let mut seen = vec![top_issuer(&default).unwrap_or_default()];
    for alternate in answer.links("alternate") {
        let (chain, _) = fetch(&alternate)?;
        let issuer = top_issuer(&chain).unwrap_or_default();
        if issuer == *preferred {
            client
                .host
                .info(format!("using the alternate chain up to {preferred}"));
            return Ok(chain);
        }
        seen.push(issuer);
    }
    client.host.warn(format!(
        "no chain up to {preferred:?} is offered (the chains end at {}); using the default",
        seen.join(", ")
    ));
    Ok(default)
}

/// The common name of the issuer of the last certificate in a PEM chain.
pub fn top_issuer(chain_pem: &str) -> Option<String> {
    let blocks = pem::parse_many(chain_pem).ok()?;
    let last = blocks.iter().rev().find(|b| b.tag() == "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(last.contents()).ok()?;
    cert.issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}
