//! Example CA: a certvakt plugin for a fictional authority, using every part of the SDK.
//!
//! Without `api_url` a person does the authority's part: the plugin hands them the CSR in an
//! operator task and the daemon waits for the certificate to be imported. With `api_url` the
//! plugin orders, polls, registers, verifies and retires over Example CA's JSON API, through
//! the host's HTTP client and keys (the plugin never holds a key or opens a socket).
//!
//! The `test_*` settings exist for certvakt's own tests of the plugin host and the renewal
//! engine (see `test_hooks`).

use certvakt_plugin_api::profile::{
    CsrProfile, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, StringType, SubjectAttribute, oid,
};
use certvakt_plugin_api::{
    About, CertificateContext, ClientIdentity, Completion, Host, HttpRequest, HttpResponse,
    IssueOutcome, KeyRef, LogLevel, OrderContext, Plugin, PluginError, SettingDoc, SettingProblem,
    SignatureAlgorithm, StepContext, StepOutcome, TaskFile, TaskFileContent, TaskSpec,
    export_plugin,
};
use serde::Deserialize;
use serde_json::{Value, json};

mod test_hooks;

/// The plugin. It keeps nothing between calls: per-renewal data travels in `state`.
#[derive(Debug, Default)]
pub struct ExampleCa;

export_plugin!(ExampleCa);

/// A certificate's `[certificate.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    common_name: String,
    organisation: String,
    #[serde(default)]
    key: KeyChoice,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    test_panic_in: Option<String>,
    #[serde(default)]
    test_delay_ms: u64,
    #[serde(default)]
    test_task_in: Option<String>,
    #[serde(default)]
    test_fail_in: Option<String>,
    #[serde(default)]
    test_mail_in: Option<String>,
    /// Held for the whole call while a test hook is set (see `test_hooks`).
    #[serde(skip)]
    _call: Option<test_hooks::InFlight>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
enum KeyChoice {
    #[default]
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
}

impl Settings {
    /// The settings for a call to `method`, after the test hooks have had their say.
    fn for_call(
        host: &Host<'_>,
        certificate: &CertificateContext,
        method: &str,
    ) -> Result<Settings, PluginError> {
        let mut settings: Settings = serde_json::from_value(certificate.settings.clone())
            .map_err(|e| PluginError::configuration(format!("settings: {e}")))?;
        settings._call = test_hooks::before_call(host, certificate, method, &settings)?;
        Ok(settings)
    }
}

impl Plugin for ExampleCa {
    const NAME: &'static str = "example";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn describe(&self) -> About {
        About {
            summary: "Example CA: orders by hand in its portal, or over its API with api_url."
                .into(),
            settings: vec![
                SettingDoc::required("common_name", "CN of the certificate.")
                    .example("\"apotek.example\""),
                SettingDoc::required("organisation", "O of the certificate.")
                    .example("\"Hjørring Apotek\""),
                SettingDoc::optional("key", "\"ec-p256\" (default) or \"rsa-3072\".")
                    .example("\"ec-p256\""),
                SettingDoc::optional("api_url", "Example CA's API; without it all is manual.")
                    .example("\"https://api.example-ca.test\""),
                SettingDoc::optional("test_panic_in", "Test hook: the method that panics.")
                    .example("\"issue\""),
                SettingDoc::optional("test_delay_ms", "Test hook: sleep in every call.")
                    .example("100"),
                SettingDoc::optional("test_task_in", "Test hook: the method that opens a task.")
                    .example("\"register\""),
                SettingDoc::optional("test_fail_in", "Test hook: the method that fails.")
                    .example("\"issue\""),
                SettingDoc::optional(
                    "test_mail_in",
                    "Test hook: the method that has the host send an access request by mail.",
                )
                .example("\"issue\""),
            ],
            key_policies: Vec::new(),
        }
    }

    fn validate_settings(&self, settings: &Value) -> Vec<SettingProblem> {
        let Some(table) = settings.as_object() else {
            return vec![SettingProblem::new("", "settings must be a table")];
        };
        let documented = self.describe().settings;
        let mut problems = Vec::new();
        for doc in documented.iter().filter(|doc| doc.required) {
            let value = table.get(&doc.key).and_then(Value::as_str).unwrap_or("");
            if value.trim().is_empty() {
                let example = doc.example.as_deref().unwrap_or("\"…\"");
                problems.push(
                    SettingProblem::new(&doc.key, "is required")
                        .with_hint(format!("write {} = {example}", doc.key)),
                );
            }
        }
        if let Some(key) = table.get("key") {
            if serde_json::from_value::<KeyChoice>(key.clone()).is_err() {
                problems.push(
                    SettingProblem::new("key", format!("{key} is not a key type Example CA takes"))
                        .with_hint("write key = \"ec-p256\" or key = \"rsa-3072\""),
                );
            }
        }
        if let Some(url) = table.get("api_url") {
            if !url.as_str().is_some_and(|u| u.starts_with("https://")) {
                problems.push(SettingProblem::new("api_url", "must be an https:// URL"));
            }
        }
        let known: Vec<&str> = documented.iter().map(|doc| doc.key.as_str()).collect();
        for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
            problems.push(
                SettingProblem::new(key, "unknown setting")
                    .with_hint(format!("known settings: {}", known.join(", "))),
            );
        }
        problems
    }

    fn csr_profile(
        &self,
        host: &Host<'_>,
        certificate: CertificateContext,
    ) -> Result<CsrProfile, PluginError> {
        let settings = Settings::for_call(host, &certificate, "csr_profile")?;
        let attribute = |oid: &str, value: &str| SubjectAttribute {
            oid: oid.into(),
            value: value.into(),
            string_type: StringType::Utf8,
        };
        Ok(CsrProfile {
            key: match settings.key {
                KeyChoice::EcP256 => KeyAlgorithm::EcP256,
                KeyChoice::Rsa3072 => KeyAlgorithm::Rsa3072,
            },
            subject: vec![
                attribute(oid::COUNTRY, "DK"),
                attribute(oid::ORGANIZATION, &settings.organisation),
                attribute(oid::COMMON_NAME, &settings.common_name),
            ],
            sans: Vec::new(),
            key_usage: vec![KeyUsage::DigitalSignature],
            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
        })
    }

    fn issue(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(host, &order.certificate, "issue")?;
        let id = &order.certificate.certificate_id;
        let Some(api) = settings.api_url else {
            return Ok(IssueOutcome::Pending {
                poll_after_secs: 3600,
                task: Some(TaskSpec {
                    title: format!("Order the certificate {id} from Example CA"),
                    instructions: format!(
                        "1. Sign in to https://portal.example-ca.test as the organisation's administrator.\n\
                         2. Choose Certificates > Renew and upload request.csr.\n\
                         3. Download the issued certificate as PEM and run: certvakt import {id} FILE"
                    ),
                    files: vec![TaskFile {
                        name: "request.csr".into(),
                        content: TaskFileContent::Csr,
                    }],
                    completes_by: Completion::Import,
                }),
                state: json!({ "ordered_at": host.now()? }),
            });
        };
        // Renewals authenticate with the certificate they replace; a first order cannot.
        let identity = match order.certificate.current {
            Some(_) => ClientIdentity::Current,
            None => ClientIdentity::None,
        };
        let body = json!({ "csr": order.csr_pem }).to_string();
        let response = host.http(api_request("POST", &api, "/orders", body).identity(identity))?;
        if response.status != 201 {
            return Err(refused("take the order", &response));
        }
        let body = json_body(&response)?;
        let Some(order_id) = body["order_id"].as_str() else {
            return Err(PluginError::temporary(
                "Example CA's answer has no order_id",
            ));
        };
        host.log_with(LogLevel::Info, "order placed", &[("order_id", order_id)]);
        Ok(IssueOutcome::Pending {
            poll_after_secs: 60,
            task: None,
            state: json!({ "order_id": order_id }),
        })
    }

    fn poll(&self, host: &Host<'_>, order: OrderContext) -> Result<IssueOutcome, PluginError> {
        let settings = Settings::for_call(host, &order.certificate, "poll")?;
        let pending = |state: Value, poll_after_secs| IssueOutcome::Pending {
            poll_after_secs,
            task: None,
            state,
        };
        let Some(api) = settings.api_url else {
            // The person imports the certificate; nothing to ask.
            return Ok(pending(order.state, 3600));
        };
        let Some(order_id) = order.state["order_id"].as_str() else {
            return Err(PluginError::permanent(
                "poll without an order_id in the state",
            ));
        };
        let path = format!("/orders/{order_id}");
        let response = host.http(api_request("GET", &api, &path, String::new()))?;
        match response.status {
            200 => Ok(IssueOutcome::Issued {
                chain_pem: String::from_utf8_lossy(&response.body).into_owned(),
            }),
            202 => Ok(pending(order.state, 60)),
            _ => Err(refused("report on the order", &response)),
        }
    }

    /// Uses every host service: log, state_get/put, now, sign, http, open_task.
    fn register(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(host, &step.certificate, "register")?;
        let Some(new) = &step.new else {
            return Err(PluginError::permanent("register needs the new certificate"));
        };
        host.log_with(
            LogLevel::Info,
            "registering the new certificate",
            &[("serial", &new.serial)],
        );
        let Some(api) = settings.api_url else {
            return Ok(StepOutcome::Pending {
                poll_after_secs: 3600,
                task: Some(TaskSpec {
                    title: "Add the new certificate to Example CA's directory".into(),
                    instructions: "1. Sign in to https://portal.example-ca.test.\n\
                                   2. Choose Directory > Add certificate and upload certificate.pem.\n\
                                   3. Run: certvakt task done TASK-ID"
                        .into(),
                    files: vec![TaskFile {
                        name: "certificate.pem".into(),
                        content: TaskFileContent::CertificatePem,
                    }],
                    completes_by: Completion::Confirm,
                }),
                state: step.state,
            });
        };
        // A step may run again after a crash: registering twice is harmless, but skip it.
        if host.state_get("registered_serial")? == Some(json!(new.serial)) {
            return Ok(StepOutcome::Done { state: step.state });
        }
        // Proof of possession: Example CA checks this against the new certificate's key.
        let challenge = format!("register:{}:{}", new.serial, host.now()?);
        let algorithm = match settings.key {
            KeyChoice::EcP256 => SignatureAlgorithm::EcdsaP256Sha256,
            KeyChoice::Rsa3072 => SignatureAlgorithm::RsaPkcs1Sha256,
        };
        let signature = host.sign(KeyRef::Pending, algorithm, challenge.as_bytes())?;
        let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
        let body = json!({ "certificate_pem": new.pem, "challenge": challenge, "signature": hex });
        let request = api_request("POST", &api, "/registrations", body.to_string());
        let response = host.http(request.identity(ClientIdentity::Current))?;
        let mut state = step.state;
        match response.status {
            200 | 201 => {
                host.state_put("registered_serial", json!(new.serial))?;
                Ok(StepOutcome::Done { state })
            }
            202 if state["approval_task"].is_null() => {
                // Example CA waits for the organisation's administrator: tell them once.
                let task_id = host.open_task(TaskSpec {
                    title: "Approve the new certificate in Example CA's portal".into(),
                    instructions: "Sign in to https://portal.example-ca.test and approve the \
                                   pending registration. certvakt notices by itself."
                        .into(),
                    files: Vec::new(),
                    completes_by: Completion::Poll,
                })?;
                state["approval_task"] = json!(task_id);
                Ok(StepOutcome::Pending {
                    poll_after_secs: 600,
                    task: None,
                    state,
                })
            }
            202 => Ok(StepOutcome::Pending {
                poll_after_secs: 600,
                task: None,
                state,
            }),
            _ => Err(refused("register the certificate", &response)),
        }
    }

    fn verify(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(host, &step.certificate, "verify")?;
        let (Some(api), Some(new)) = (settings.api_url, &step.new) else {
            return Ok(StepOutcome::Done { state: step.state });
        };
        let path = format!("/registrations/{}", new.serial);
        let response = host.http(api_request("GET", &api, &path, String::new()))?;
        match response.status {
            200 => Ok(StepOutcome::Done { state: step.state }),
            404 => Ok(StepOutcome::Pending {
                poll_after_secs: 300,
                task: None,
                state: step.state,
            }),
            _ => Err(refused("confirm the registration", &response)),
        }
    }

    fn retire(&self, host: &Host<'_>, step: StepContext) -> Result<StepOutcome, PluginError> {
        let settings = Settings::for_call(host, &step.certificate, "retire")?;
        let (Some(api), Some(old)) = (settings.api_url, &step.certificate.current) else {
            return Ok(StepOutcome::Done { state: step.state });
        };
        let path = format!("/registrations/{}", old.serial);
        let response = host.http(api_request("DELETE", &api, &path, String::new()))?;
        match response.status {
            200 | 204 | 404 => Ok(StepOutcome::Done { state: step.state }),
            _ => Err(refused("withdraw the old certificate", &response)),
        }
    }
}

/// A request to Example CA's API, which the host checks against the `example-ca` anchors.
fn api_request(method: &str, api: &str, path: &str, body: String) -> HttpRequest {
    HttpRequest::new(method, format!("{}{path}", api.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(body)
        .trust("example-ca")
}

fn json_body(response: &HttpResponse) -> Result<Value, PluginError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| PluginError::temporary(format!("Example CA's answer is not JSON: {e}")))
}

/// A refusal from the API: 5xx is worth retrying, anything else is not.
fn refused(what: &str, response: &HttpResponse) -> PluginError {
    let message = format!("Example CA did not {what}: HTTP {}", response.status);
    let error = match response.status {
        500.. => PluginError::temporary(message),
        _ => PluginError::permanent(message),
    };
    let fault = serde_json::from_slice::<Value>(&response.body).ok();
    match fault.as_ref().and_then(|body| body["fault"].as_str()) {
        Some(code) => error.with_fault_code(code),
        None => error,
    }
}
