//! Who the device is: its key and certificate, obtained by driving core's
//! [`EnrolmentMachine`] (enrol, wait for approval, register) and renewed when the
//! machine says renewal falls due ([`NextAction::Run`]'s `renew_at`). The agent
//! decides none of the timing; it sends what the machine asks, when it asks.

use std::sync::atomic::Ordering;

use flotta_client::{EdgeClient, EnrolmentOutcome, Identity, RegistrationOutcome};
use flotta_core::enrolment::{
    AgentConfig, AgentPhase, Credential, Directive, EnrolmentError, EnrolmentMachine,
    ExchangeOutcome, NextAction,
};
use flotta_core::pki::{DeviceKey, PeerCertificate};
use flotta_core::wire::{
    EnrolmentInfo, EnrolmentInfoFeatures, RegistrationInfo, RegistrationResponse,
};
use time::OffsetDateTime;

use super::Agent;
use super::builder::edge_client;
use super::control::is_disconnect;
use super::status::{AgentEvent, lock};
use crate::error::AgentError;
use crate::state::{PersistedIdentity, StateError, StateItem, load_text};

/// The device key and certificate the agent uses.
pub(super) struct HeldIdentity {
    key_pem: String,
    certificate_pem: String,
    not_after: OffsetDateTime,
    /// When this agent got the certificate; `None` for one read from state.
    received_at: Option<OffsetDateTime>,
}

impl HeldIdentity {
    fn new(
        key_pem: String,
        certificate_pem: String,
        received_at: Option<OffsetDateTime>,
    ) -> Result<Self, AgentError> {
        let facts =
            PeerCertificate::parse(certificate_pem.as_bytes()).map_err(AgentError::Certificate)?;
        Ok(Self {
            key_pem,
            certificate_pem,
            not_after: facts.not_after,
            received_at,
        })
    }

    fn identity(&self) -> Result<Identity, AgentError> {
        Identity::from_pem(&self.certificate_pem, &self.key_pem).map_err(|source| {
            AgentError::Client {
                what: "device identity",
                source,
            }
        })
    }

    /// The enrolment machine of a device running with this certificate.
    fn machine(&self, config: AgentConfig) -> Result<EnrolmentMachine, AgentError> {
        let machine = EnrolmentMachine::with_certificate(config, &self.certificate_pem)
            .map_err(AgentError::Certificate)?;
        Ok(match self.received_at {
            Some(at) => machine.received_at(at),
            None => machine,
        })
    }
}

fn generate_key() -> Result<DeviceKey, AgentError> {
    DeviceKey::generate().map_err(|source| AgentError::Key {
        what: "generating the key failed",
        source,
    })
}

impl Agent {
    async fn device_key(&self) -> Result<DeviceKey, AgentError> {
        if let Some(pem) = load_text(self.state.as_ref(), StateItem::DeviceKey).await? {
            return DeviceKey::from_pem(&pem).map_err(|source| AgentError::Key {
                what: "the persisted key is unreadable",
                source,
            });
        }
        let key = generate_key()?;
        self.state
            .save(StateItem::DeviceKey, key.to_pem().as_bytes())
            .await?;
        Ok(key)
    }

    /// Finishes a renewal that was committed (its key and certificate saved together)
    /// but not yet copied to the key and certificate items when the agent stopped.
    async fn finish_renewal(&self) -> Result<(), AgentError> {
        let Some(bytes) = self.state.load(StateItem::RenewedIdentity).await? else {
            return Ok(());
        };
        let renewed = PersistedIdentity::decode(StateItem::RenewedIdentity, &bytes)?;
        self.install_identity(&renewed).await?;
        tracing::info!("completed a renewal interrupted by a restart");
        Ok(())
    }

    /// Copies a committed key and certificate to their items, then drops the commit.
    async fn install_identity(&self, identity: &PersistedIdentity) -> Result<(), StateError> {
        self.state
            .save(StateItem::DeviceKey, identity.key.as_bytes())
            .await?;
        self.state
            .save(
                StateItem::DeviceCertificate,
                identity.certificate.as_bytes(),
            )
            .await?;
        self.state.remove(StateItem::RenewedIdentity).await
    }

    /// Trusts `ca_pem` for the server from now on: in the run loops' client and in
    /// the clients of later renewals.
    fn trust(&self, ca_pem: &str) -> Result<(), AgentError> {
        self.client
            .set_trust(ca_pem)
            .map_err(|source| AgentError::Client {
                what: "server trust",
                source,
            })?;
        *lock(&self.ca_pem) = ca_pem.to_owned();
        Ok(())
    }

    /// Adopts the `caBundle` that came with the certificate just obtained, if any
    /// and if it differs, and saves it so that a restart trusts the same CAs. An
    /// unusable bundle is ignored (with a warning): the CAs trusted so far stay.
    async fn adopt_offered_trust(&self) -> Result<(), AgentError> {
        let Some(bundle) = lock(&self.offered_trust).take() else {
            return Ok(());
        };
        if *lock(&self.ca_pem) == bundle {
            return Ok(());
        }
        if let Err(error) = self.trust(&bundle) {
            tracing::warn!(%error, "the server's caBundle is unusable; keeping the CAs trusted so far");
            return Ok(());
        }
        self.state
            .save(StateItem::ServerTrust, bundle.as_bytes())
            .await?;
        tracing::info!("trusting the CAs the server handed out with the certificate");
        Ok(())
    }

    /// The device identity: the persisted one (renewed later by the identity loop
    /// if due), or a new one from enrolment and registration.
    pub(super) async fn establish_identity(&self) -> Result<HeldIdentity, AgentError> {
        self.finish_renewal().await?;
        if let Some(bundle) = load_text(self.state.as_ref(), StateItem::ServerTrust).await? {
            self.trust(&bundle)?;
        }
        let key = self.device_key().await?;
        if let Some(pem) = load_text(self.state.as_ref(), StateItem::DeviceCertificate).await? {
            let held = HeldIdentity::new(key.to_pem(), pem, None)?;
            self.use_identity(&held)?;
            self.set_phase(AgentPhase::Running);
            self.shared.emit(AgentEvent::Resumed);
            return Ok(held);
        }
        let mut machine = EnrolmentMachine::new(self.enrolment);
        let next = machine.start(self.clock.now());
        let Some(certificate) = self
            .obtain_certificate(&mut machine, next, None, &key)
            .await?
        else {
            return Err(AgentError::InvalidSetting {
                field: "device_id",
                reason: "the server disconnected a device that was never registered".into(),
            });
        };
        self.adopt_offered_trust().await?;
        self.state
            .save(StateItem::DeviceCertificate, certificate.as_bytes())
            .await?;
        let held = HeldIdentity::new(key.to_pem(), certificate, Some(self.clock.now()))?;
        self.use_identity(&held)?;
        self.set_phase(AgentPhase::Running);
        tracing::info!(device = %self.device_id, "registered");
        self.shared.emit(AgentEvent::Registered);
        Ok(held)
    }

    /// Switches the run loops' client to `held`.
    fn use_identity(&self, held: &HeldIdentity) -> Result<(), AgentError> {
        self.client
            .set_identity(held.identity()?)
            .map_err(|source| AgentError::Client {
                what: "identity swap",
                source,
            })?;
        let now = self.clock.now();
        let renew_at = match held.machine(self.enrolment)?.tick(now) {
            NextAction::Run { renew_at } => renew_at,
            NextAction::Send { at, .. } => at,
        };
        self.shared.update(|s| {
            s.certificate_expires = Some(held.not_after);
            s.certificate_renew_at = Some(renew_at);
        });
        Ok(())
    }

    /// A client presenting `identity`, for enrolment and renewal requests (the run
    /// loops keep theirs meanwhile).
    fn enrolment_client(&self, identity: Identity) -> Result<EdgeClient, AgentError> {
        let ca_pem = lock(&self.ca_pem).clone();
        edge_client(&self.server, &ca_pem, identity, &self.timing, &self.net).map_err(|source| {
            AgentError::Client {
                what: "enrolment client",
                source,
            }
        })
    }

    /// Drives `machine` from `next` until the server issues a certificate for
    /// `csr_key` other than `current`'s; returns it (PEM), or `None` when the server
    /// refused `current` because the device was deleted.
    async fn obtain_certificate(
        &self,
        machine: &mut EnrolmentMachine,
        mut next: NextAction,
        current: Option<&HeldIdentity>,
        csr_key: &DeviceKey,
    ) -> Result<Option<String>, AgentError> {
        let current_pem = current.map(|c| c.certificate_pem.as_str());
        let new_certificate = |machine: &EnrolmentMachine| {
            machine
                .certificate_pem()
                .filter(|p| Some(*p) != current_pem)
                .map(str::to_owned)
        };
        let mut registration_client = None;
        let mut device_client = None;
        loop {
            self.set_phase(machine.phase());
            let request = match next {
                NextAction::Run { .. } => {
                    if let Some(pem) = new_certificate(machine) {
                        return Ok(Some(pem));
                    }
                    // Holding the old certificate only: ask again.
                    next = machine.on_unauthorized(self.clock.now());
                    continue;
                }
                NextAction::Send { request, at } => {
                    self.clock.sleep_until(at).await;
                    request
                }
            };
            let client = match (request.credential, current) {
                (Credential::DeviceCertificate, Some(held)) => {
                    if device_client.is_none() {
                        device_client = Some(self.enrolment_client(held.identity()?)?);
                    }
                    &device_client
                }
                _ => {
                    if registration_client.is_none() {
                        registration_client =
                            Some(self.enrolment_client(self.registration.clone())?);
                    }
                    &registration_client
                }
            };
            let Some(client) = client else { continue };
            let outcome = self.exchange(client, request.directive, csr_key).await?;
            next = machine.on_outcome(outcome, self.clock.now(), super::random());
            if let Some(pem) = new_certificate(machine) {
                return Ok(Some(pem));
            }
            if let (Some(EnrolmentError::DeviceCertificateRefused { .. }), Some(client)) =
                (machine.last_error(), &device_client)
            {
                // Revoked: a deleted device must not enrol again as a new one.
                if let Ok(Some(command)) = client.control_in(&self.device_id).await
                    && is_disconnect(&command)
                {
                    return Ok(None);
                }
            }
            if let Some(error) = machine.last_error() {
                tracing::info!(%error, attempt = machine.attempt(), "enrolment not done yet");
            }
        }
    }

    /// Sends one enrolment or registration with `client` and says how it ended.
    async fn exchange(
        &self,
        client: &EdgeClient,
        directive: Directive,
        key: &DeviceKey,
    ) -> Result<ExchangeOutcome, AgentError> {
        let hardware = Some(self.hardware.probe().await);
        let result = if directive == Directive::Registration {
            let csr = key.csr(&self.device_id).map_err(|source| AgentError::Key {
                what: "building the CSR failed",
                source,
            })?;
            let info = RegistrationInfo {
                hardware,
                certificate_request: Some(csr.pem()),
                ..Default::default()
            };
            client
                .register(&self.device_id, &info)
                .await
                .map(|outcome| match outcome {
                    RegistrationOutcome::NotApproved => ExchangeOutcome::NotApproved,
                    RegistrationOutcome::Registered {
                        certificate_pem,
                        response,
                    } => {
                        let offered = response
                            .content_as::<RegistrationResponse>()
                            .ok()
                            .and_then(|content| content.ca_bundle);
                        *lock(&self.offered_trust) = offered;
                        ExchangeOutcome::Registered { certificate_pem }
                    }
                })
        } else {
            let info = EnrolmentInfo {
                target_namespace: Some(self.namespace.clone()),
                labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                features: Some(EnrolmentInfoFeatures {
                    hardware,
                    ..Default::default()
                }),
                ..Default::default()
            };
            client
                .enrol(&self.device_id, &info)
                .await
                .map(|outcome| ExchangeOutcome::Enrolled {
                    already_approved: outcome == EnrolmentOutcome::AlreadyApproved,
                })
        };
        Ok(match result {
            Ok(outcome) => outcome,
            Err(error) => match error.status() {
                Some(status) => ExchangeOutcome::from_refusal(status, error.reason()),
                None => {
                    tracing::warn!(%error, %directive, "server unreachable");
                    ExchangeOutcome::Unreachable
                }
            },
        })
    }

    /// Renews the certificate when the enrolment machine says it falls due, or when
    /// a call was refused with 401, for as long as the agent runs.
    pub(super) async fn identity_loop(&self, mut held: HeldIdentity) -> Result<(), AgentError> {
        let mut failures = 0u32;
        loop {
            let mut machine = held.machine(self.enrolment)?;
            let mut next = if failures == 0 {
                machine.tick(self.clock.now())
            } else {
                // The last renewal could not be committed: renew again after a
                // backoff, due or not.
                self.clock.sleep(self.retry_delay(failures)).await;
                machine.on_unauthorized(self.clock.now())
            };
            while let NextAction::Run { renew_at } = next {
                self.shared
                    .update(|s| s.certificate_renew_at = Some(renew_at));
                tokio::select! {
                    () = self.clock.sleep_until(renew_at) => next = machine.tick(self.clock.now()),
                    () = self.shared.renew_now.notified() => {
                        if self.shared.renewal_requested.load(Ordering::SeqCst) {
                            tracing::info!("renewing the certificate now: a call was refused with 401, or the server asked");
                            next = machine.on_unauthorized(self.clock.now());
                        }
                    }
                }
            }
            match self.renew(&held, machine, next).await {
                Ok(Some(renewed)) => {
                    held = renewed;
                    failures = 0;
                }
                Ok(None) => return self.disconnect().await,
                Err(AgentError::State(error)) => {
                    failures = failures.saturating_add(1);
                    self.shared
                        .state_write_failed(StateItem::RenewedIdentity, &error);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One renewal, from the machine's `next` request: a new key, a CSR sent with
    /// the current (possibly expired) certificate, and the new key and certificate
    /// committed in one atomic save.
    async fn renew(
        &self,
        held: &HeldIdentity,
        mut machine: EnrolmentMachine,
        next: NextAction,
    ) -> Result<Option<HeldIdentity>, AgentError> {
        let new_key = generate_key()?;
        self.shared.renewal_requested.store(false, Ordering::SeqCst);
        let Some(certificate) = self
            .obtain_certificate(&mut machine, next, Some(held), &new_key)
            .await?
        else {
            return Ok(None);
        };
        self.adopt_offered_trust().await?;
        let received_at = self.clock.now();
        // Whether the server took an expired certificate (after an outage).
        let expired = received_at >= held.not_after;
        let committed = PersistedIdentity {
            key: new_key.to_pem(),
            certificate,
        };
        self.state
            .save(StateItem::RenewedIdentity, &committed.encode())
            .await?;
        // Committed: from here a restart installs the new identity.
        let renewed = HeldIdentity::new(
            committed.key.clone(),
            committed.certificate.clone(),
            Some(received_at),
        )?;
        self.use_identity(&renewed)?;
        self.shared.renewal_requested.store(false, Ordering::SeqCst);
        self.set_phase(AgentPhase::Running);
        if let Err(error) = self.install_identity(&committed).await {
            // The commit stays and is installed at the next start.
            self.shared
                .state_write_failed(StateItem::DeviceCertificate, &error);
        }
        self.shared.update(|s| s.state_error = None);
        tracing::info!(expired, not_after = %renewed.not_after, "certificate renewed");
        self.shared.report(
            if expired {
                "CertificateReRegistered"
            } else {
                "CertificateRenewed"
            },
            format!("new certificate valid until {}", renewed.not_after),
            false,
        );
        self.shared.emit(AgentEvent::CertificateRenewed {
            expired,
            not_after: renewed.not_after,
        });
        // A heartbeat at once shows the server takes the new certificate.
        self.shared.heartbeat_now.notify_one();
        Ok(Some(renewed))
    }
}
