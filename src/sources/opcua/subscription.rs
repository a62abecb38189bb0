//! Reading values: the subscription (monitored items created in batches within the server's
//! limits, notifications handed to the session loop through a bounded queue) or, in poll mode, a
//! read of every tag each cycle.

use std::sync::Arc;
use std::time::Duration;

use opcua::client::{MonitoredItemMap, OnSubscriptionNotificationCore};
use opcua::types::{
    DataChangeFilter, DataChangeNotification, DataChangeTrigger, DataValue, DeadbandType,
    ExtensionObject, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters,
    NotificationMessage, ReadValueId, StatusChangeNotification, StatusCode, TimestampsToReturn,
};
use tokio::sync::mpsc;

use super::connect::Live;
use super::source::OpcUaSource;

/// What the subscription callback hands to the session loop.
pub(super) enum Note {
    Data(Vec<(u32, DataValue)>),
    Status(StatusCode),
}

/// Notifications waiting for the session loop at most: a journal that cannot keep up does not make
/// the agent's memory grow. A notification that finds the queue full is dropped and counted; the
/// session loop then ends the session as an outage, so the loss is a gap record, never silent.
pub(super) const NOTES_QUEUED: usize = 1024;

/// The subscription callback's end of the queue, and what it had to drop.
#[derive(Clone)]
pub(super) struct Notes {
    pub(super) tx: mpsc::Sender<Note>,
    pub(super) dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Notes {
    pub(super) fn send(&self, note: Note) {
        if self.tx.try_send(note).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub(super) struct Notifier(Notes);

impl OnSubscriptionNotificationCore for Notifier {
    fn on_subscription_notification(&mut self, n: NotificationMessage, _: MonitoredItemMap<'_>) {
        let mut data = Vec::new();
        for obj in n.notification_data.into_iter().flatten() {
            if let Some(dc) = obj.inner_as::<DataChangeNotification>() {
                for item in dc.monitored_items.iter().flatten() {
                    data.push((item.client_handle, item.value.clone()));
                }
            } else if let Some(sc) = obj.inner_as::<StatusChangeNotification>() {
                self.0.send(Note::Status(sc.status));
            }
        }
        if !data.is_empty() {
            self.0.send(Note::Data(data));
        }
    }
}

impl OpcUaSource {
    pub(super) async fn subscribe(&self, live: &Live, notes: Notes) -> Result<(), String> {
        let keep_alive = self.cfg.keep_alive_count();
        let sub = live
            .session
            .create_subscription(
                Duration::from_millis(self.cfg.publishing_interval_ms),
                keep_alive.saturating_mul(4),
                keep_alive,
                // Notifications per publish response: without a limit a server must fit every
                // changed item of a cycle into one message, and large ones refuse with
                // BadResponseTooLarge; with it they send several responses per cycle.
                u32::try_from(self.cfg.items_per_request).unwrap_or(u32::MAX),
                0,
                true,
                Notifier(notes),
            )
            .await
            .map_err(|e| format!("cannot create the subscription: {e}"))?;
        let items: Vec<(usize, MonitoredItemCreateRequest)> = live
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().ok().map(|n| (i, n)))
            .map(|(i, node)| {
                let t = &self.cfg.tags[i];
                let filter = match t.deadband {
                    Some(d) if d > 0.0 => ExtensionObject::from_message(DataChangeFilter {
                        trigger: DataChangeTrigger::StatusValue,
                        deadband_type: DeadbandType::Absolute as u32,
                        deadband_value: d,
                    }),
                    _ => ExtensionObject::null(),
                };
                (
                    i,
                    MonitoredItemCreateRequest {
                        item_to_monitor: ReadValueId::from(node),
                        monitoring_mode: MonitoringMode::Reporting,
                        requested_parameters: MonitoringParameters {
                            client_handle: handle(i),
                            sampling_interval: t
                                .sampling_interval_ms
                                .unwrap_or(self.cfg.sampling_interval_ms),
                            filter,
                            queue_size: t.queue_size.unwrap_or(self.cfg.queue_size),
                            discard_oldest: true,
                        },
                    },
                )
            })
            .collect();
        let mut failed = 0usize;
        for chunk in items.chunks(live.limits.monitored_items.max(1)) {
            let req: Vec<_> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let results = live
                .session
                .create_monitored_items(sub, TimestampsToReturn::Both, req)
                .await
                .map_err(|e| format!("cannot create monitored items: {e}"))?;
            for ((i, _), r) in chunk.iter().zip(results) {
                if !r.result.status_code.is_good() {
                    failed += 1;
                    tracing::warn!(
                        "opcua source {}: tag {} not monitored: {}",
                        self.id,
                        self.cfg.tags[*i].name,
                        r.result.status_code
                    );
                }
            }
        }
        tracing::debug!(
            "opcua source {}: subscription {sub} with {} monitored items ({failed} refused)",
            self.id,
            items.len()
        );
        Ok(())
    }

    pub(super) async fn poll(&self, live: &Live) -> Result<Vec<(u32, DataValue)>, String> {
        let reads: Vec<(usize, ReadValueId)> = live
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().ok().map(|n| (i, ReadValueId::from(n))))
            .collect();
        let mut out = Vec::with_capacity(reads.len());
        for chunk in reads.chunks(live.limits.read.max(1)) {
            let req: Vec<_> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let values = live
                .session
                .read(&req, TimestampsToReturn::Both, 0.0)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            for ((i, _), dv) in chunk.iter().zip(values) {
                out.push((handle(*i), dv));
            }
        }
        Ok(out)
    }
}

/// Client handle of tag `i` (0 is reserved by the library).
pub(super) fn handle(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}
