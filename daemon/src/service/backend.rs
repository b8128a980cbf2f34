//! What the control socket talks to: the daemon's shared state, each request answered from
//! the published snapshots or by asking the renewal engine or the run loop.
//!
//! Contract: a request never waits for a scan or a plugin; a command for the renewal engine is
//! answered by it at once (the engine refuses at once what it cannot do now); a reload is
//! handed to the run loop.

use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use super::report::{list_page, problems_message, renewals_page, show_report, status_report};
use super::{Command, View};
use crate::control::Backend;
use crate::control::protocol::{
    ErrorCode, PluginInfo, PluginsReport, RefusedPlugin, Request, Response, Task,
};
use crate::lifecycle::client_identities::SharedConfig;
use crate::lifecycle::{self, EngineError, EngineView};
use crate::metrics::Metrics;
use crate::plugin_host::Registry;

/// The part of the daemon the control socket talks to.
pub(super) struct Shared {
    pub(super) started_at: i64,
    pub(super) view: Arc<RwLock<Arc<View>>>,
    pub(super) notifier: crate::notify::Notifier,
    pub(super) metrics: Arc<Metrics>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) plugins: Arc<Registry>,
    pub(super) engine: mpsc::Sender<lifecycle::Command>,
    pub(super) engine_view: Arc<RwLock<EngineView>>,
    /// Told each time [`Shared::publish`] replaces the view (the notifier looks then).
    pub(super) published: Arc<tokio::sync::Notify>,
    /// The configuration the HTTP client's identities and trust sets read.
    pub(super) config: SharedConfig,
}

impl Shared {
    pub(super) fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(super) fn publish(&self, view: View) {
        let view = Arc::new(view);
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        self.published.notify_one();
    }
}

impl Backend for Shared {
    async fn handle(&self, request: Request) -> Response {
        let name = request.name();
        let response = match request {
            Request::Status => Response::Status(Box::new(status_report(
                &self.view(),
                self.started_at,
                &self.engine_view(),
                self.plugins.refused.len(),
                &self.notifier.view(),
            ))),
            Request::List { offset, limit } => {
                list_page(&self.view(), crate::now_unix(), offset, limit)
            }
            Request::Renewals { offset, limit } => {
                renewals_page(&self.engine_view(), offset, limit)
            }
            Request::Show { id } => {
                match show_report(&self.view(), &id, crate::now_unix(), &self.engine_view()) {
                    Some(report) => Response::Show(report),
                    None => Response::Error {
                        code: ErrorCode::NotFound,
                        message: format!(
                            "no certificate or source with id `{id}` (see `certvakt list`; watched files are named by path)"
                        ),
                    },
                }
            }
            Request::Reload => self.reload().await,
            Request::Renew { id, force } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Renew { id, force, reply },
                    |message| Response::Renew { message },
                )
                .await
            }
            Request::Rollback { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Rollback { id, reply },
                    |message| Response::Rollback { message },
                )
                .await
            }
            Request::TaskDone { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::TaskDone { task_id: id, reply },
                    |message| Response::TaskDone { message },
                )
                .await
            }
            Request::Import {
                id,
                data,
                password,
                more,
            } => {
                use base64::Engine as _;
                let decoded: Result<Vec<_>, _> = std::iter::once(&data)
                    .chain(&more)
                    .map(|data| {
                        base64::engine::general_purpose::STANDARD
                            .decode(data.as_bytes())
                            .map(zeroize::Zeroizing::new)
                    })
                    .collect();
                match decoded {
                    Ok(files) => {
                        let password = password.map(zeroize::Zeroizing::new);
                        self.ask_engine(
                            |reply| lifecycle::Command::Import {
                                id,
                                files,
                                password,
                                reply,
                            },
                            |message| Response::Import { message },
                        )
                        .await
                    }
                    Err(e) => Response::Error {
                        code: ErrorCode::BadRequest,
                        message: format!("the imported file did not arrive intact (base64: {e})"),
                    },
                }
            }
            Request::History { id, limit } => {
                let limit = limit
                    .unwrap_or(crate::control::protocol::HISTORY_LIMIT)
                    .max(1);
                self.ask_engine_for(
                    |reply| lifecycle::Command::History {
                        id: id.clone(),
                        limit,
                        reply,
                    },
                    |entries| Response::History {
                        id: id.clone(),
                        entries: entries
                            .iter()
                            .map(crate::control::protocol::HistoryEntry::from)
                            .collect(),
                    },
                )
                .await
            }
            Request::RenewDryRun { id } => {
                self.ask_engine_for(
                    |reply| lifecycle::Command::DryRun { id, reply },
                    |dry_run| Response::RenewDryRun((&dry_run).into()),
                )
                .await
            }
            Request::Cancel { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Cancel { id, reply },
                    |message| Response::Cancel { message },
                )
                .await
            }
            Request::Forget { id } => {
                self.ask_engine(
                    |reply| lifecycle::Command::Forget { id, reply },
                    |message| Response::Forget { message },
                )
                .await
            }
            Request::Tasks => Response::Tasks {
                tasks: self.engine_view().tasks().map(Task::from).collect(),
            },
            Request::TaskShow { id } => match self.engine_view().tasks().find(|t| t.id == id) {
                Some(task) => Response::TaskShow { task: task.into() },
                None => Response::Error {
                    code: ErrorCode::NotFound,
                    message: format!("no open task `{id}` (see `certvakt tasks`)"),
                },
            },
            Request::Plugins => Response::Plugins(self.plugins_report()),
            Request::NotifyTest { route } => self.notify_test(route).await,
            Request::NotifyRetry => {
                let (reply, rx) = oneshot::channel();
                match self.notifier.ask(crate::notify::Request::Retry { reply }) {
                    Ok(()) => match rx.await {
                        Ok(Ok(queued)) => Response::NotifyRetry { queued },
                        Ok(Err(message)) => Response::Error {
                            code: ErrorCode::Refused,
                            message,
                        },
                        Err(_) => {
                            internal("the notifier stopped before answering; see the journal")
                        }
                    },
                    Err(e) => Response::Error {
                        code: ErrorCode::Refused,
                        message: e,
                    },
                }
            }
        };
        let outcome = match response {
            Response::Error { .. } => "error",
            _ => "ok",
        };
        self.metrics.observe_control_request(name, outcome);
        response
    }
}

impl Shared {
    pub(super) fn engine_view(&self) -> EngineView {
        match self.engine_view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// `certvakt notify test`: the notifier sends through the routes and answers each result.
    async fn notify_test(&self, route: Option<String>) -> Response {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self
            .notifier
            .ask(crate::notify::Request::Test { route, reply })
        {
            return Response::Error {
                code: ErrorCode::Refused,
                message: e,
            };
        }
        match rx.await {
            Ok(Ok(results)) => Response::NotifyTest {
                results: results
                    .into_iter()
                    .map(|r| crate::control::protocol::NotifyTestResult {
                        route: r.route,
                        channel: r.channel,
                        ok: r.ok,
                        detail: r.detail,
                    })
                    .collect(),
            },
            Ok(Err(message)) => Response::Error {
                code: ErrorCode::NotFound,
                message,
            },
            Err(_) => internal("the notifier stopped before answering; see the journal"),
        }
    }

    /// Sends a command to the renewal engine and turns its answer into a response.
    pub(super) async fn ask_engine(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<String, EngineError>>) -> lifecycle::Command,
        ok: impl FnOnce(String) -> Response,
    ) -> Response {
        self.ask_engine_for(command, ok).await
    }

    /// [`Shared::ask_engine`] for a command whose answer is not a sentence.
    pub(super) async fn ask_engine_for<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> lifecycle::Command,
        ok: impl FnOnce(T) -> Response,
    ) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.engine.send(command(tx)).await.is_err() {
            return internal("the renewal engine has stopped; see the journal");
        }
        match rx.await {
            Ok(Ok(message)) => ok(message),
            Ok(Err(error)) => Response::Error {
                code: match error {
                    EngineError::UnknownCertificate(_) | EngineError::UnknownTask(_) => {
                        ErrorCode::NotFound
                    }
                    _ => ErrorCode::Refused,
                },
                message: error.to_string(),
            },
            Err(_) => internal("the renewal engine stopped before answering; see the journal"),
        }
    }

    pub(super) fn plugins_report(&self) -> PluginsReport {
        let view = self.view();
        let users = |name: &str| {
            view.config
                .certificates
                .iter()
                .filter(|c| c.plugin == name)
                .map(|c| c.id.clone())
                .collect()
        };
        PluginsReport {
            plugin_dir: view.config.daemon.plugin_dir.clone(),
            loaded: self
                .plugins
                .loaded
                .iter()
                .map(|p| PluginInfo {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    api_version: p.api_version.clone(),
                    file: p.file.clone(),
                    certificates: users(&p.name),
                })
                .collect(),
            refused: self
                .plugins
                .refused
                .iter()
                .map(|r| RefusedPlugin {
                    file: r.file.clone(),
                    reason: r.reason.to_string(),
                })
                .collect(),
        }
    }

    pub(super) async fn reload(&self) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Reload(tx)).await.is_err() {
            return internal("the daemon is shutting down");
        }
        match rx.await {
            Ok(Ok(report)) => Response::Reload(report),
            Ok(Err(problems)) => Response::Error {
                code: ErrorCode::InvalidConfig,
                message: problems_message(&problems),
            },
            Err(_) => internal("the reload was interrupted by shutdown"),
        }
    }
}

pub(super) fn internal(message: &str) -> Response {
    Response::Error {
        code: ErrorCode::Internal,
        message: message.to_owned(),
    }
}
