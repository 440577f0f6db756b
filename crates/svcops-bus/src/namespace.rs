//! A bus whose topics and consumer groups live under a prefix, so several svcops clusters
//! (tenants, staging next to production, parallel system tests) can share one broker.

use async_trait::async_trait;

use crate::{Bus, Delivery, Error, Message, Subscription};

pub struct NamespacedBus<B> {
    inner: B,
    prefix: String,
}

impl<B: Bus> NamespacedBus<B> {
    /// Topics become `<namespace>.<topic>`, groups `<namespace>.<group>`.
    pub fn new(inner: B, namespace: &str) -> Self {
        Self {
            inner,
            prefix: format!("{namespace}."),
        }
    }
}

#[async_trait]
impl<B: Bus> Bus for NamespacedBus<B> {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), Error> {
        self.inner
            .publish(&format!("{}{topic}", self.prefix), messages)
            .await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, Error> {
        let topics: Vec<String> = topics
            .iter()
            .map(|topic| format!("{}{topic}", self.prefix))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let inner = self
            .inner
            .subscribe(&format!("{}{group}", self.prefix), &topics)
            .await?;
        Ok(Box::new(NamespacedSubscription {
            inner,
            prefix: self.prefix.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), Error> {
        self.inner.ping().await
    }
}

struct NamespacedSubscription {
    inner: Box<dyn Subscription>,
    prefix: String,
}

impl NamespacedSubscription {
    /// Callers see the names they subscribed with (dead letters derive from it).
    fn unprefixed(&self, mut delivery: Delivery) -> Delivery {
        if let Some(topic) = delivery.topic.strip_prefix(&self.prefix) {
            delivery.topic = topic.to_owned();
        }
        delivery
    }

    fn prefixed(&self, delivery: &Delivery) -> Delivery {
        let mut prefixed = delivery.clone();
        prefixed.topic = format!("{}{}", self.prefix, delivery.topic);
        prefixed
    }
}

#[async_trait]
impl Subscription for NamespacedSubscription {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let delivery = self.inner.next().await?;
        Ok(self.unprefixed(delivery))
    }

    fn try_next(&mut self) -> Option<Result<Delivery, Error>> {
        Some(
            self.inner
                .try_next()?
                .map(|delivery| self.unprefixed(delivery)),
        )
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        let prefixed = self.prefixed(delivery);
        self.inner.ack(&prefixed).await
    }

    async fn ack_all(&mut self, deliveries: &[Delivery]) -> Result<(), Error> {
        let prefixed: Vec<Delivery> = deliveries
            .iter()
            .map(|delivery| self.prefixed(delivery))
            .collect();
        self.inner.ack_all(&prefixed).await
    }
}
