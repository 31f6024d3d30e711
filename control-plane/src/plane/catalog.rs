//! The catalog the filter routes and counts by: providers, routes, plans and prices, added,
//! replaced and removed (a removal something still refers to needs `force`).

use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Adds or replaces a provider. Its credential is sealed here or named as an environment
    /// variable of Envoy's Wasm VM.
    pub fn put_provider(
        &self,
        mut provider: ProviderConfig,
        secret: ProviderSecret,
        now: u64,
    ) -> Result<(), PlaneError> {
        self.serialized(|| {
            let sealed = match &secret {
                ProviderSecret::Env(var) => {
                    provider.credential = CredentialSource::Env(var.clone());
                    None
                }
                ProviderSecret::Sealed(value) => {
                    // Validated below with a placeholder of the same shape; the value itself never
                    // leaves the seal except into a rendered config.
                    provider.credential = CredentialSource::Inline(value.clone());
                    Some(
                        self.master
                            .seal(&provider_context(&provider.name), value.as_bytes())?,
                    )
                }
            };
            let stored = StoredProvider {
                config: provider.clone(),
                credential_sealed: sealed,
            };
            self.check_with(now, |config| {
                config.providers.retain(|p| p.name != provider.name);
                config.providers.push(provider.clone());
            })?;
            let mut kept = stored;
            if kept.credential_sealed.is_some() {
                // The document keeps no secret: the sealed column does.
                kept.config.credential = CredentialSource::Inline(String::new());
            }
            self.store.put_provider(&kept)?;
            let source = match secret {
                ProviderSecret::Env(var) => format!("credential from env {var}"),
                ProviderSecret::Sealed(_) => "credential sealed".to_string(),
            };
            self.audit(now, "provider.put", &provider.name, &source)?;
            Ok(())
        })
    }

    /// Every provider, whether it can carry traffic — as far as this control plane can tell
    /// from the environment variables its Envoys' VMs get (`vm_env_keys`; `None`: not its to
    /// know) and from what Envoys report they could not load (`reports`, by node).
    pub fn provider_listing(
        &self,
        vm_env_keys: Option<&[String]>,
        reports: &[(&str, &[model::ConfigPart])],
    ) -> Result<Vec<ProviderListing>, PlaneError> {
        let stored = self.store.providers()?;
        let configs: Vec<ProviderConfig> = stored.iter().map(|p| p.config.clone()).collect();
        let availability = model::provider_availability(&configs, vm_env_keys, reports);
        Ok(stored
            .into_iter()
            .zip(availability)
            .map(|(stored, (_, availability))| {
                let part = model::ConfigPart {
                    kind: "provider".into(),
                    name: model::stat_name(&stored.config.name),
                };
                let unavailable_in = reports
                    .iter()
                    .filter(|(_, parts)| parts.contains(&part))
                    .map(|(node, _)| node.to_string())
                    .collect();
                ProviderListing {
                    stored,
                    availability,
                    unavailable_in,
                }
            })
            .collect())
    }

    /// The plan of credentials that name none.
    pub fn default_plan(&self) -> Result<Option<String>, PlaneError> {
        Ok(self
            .store
            .setting(SETTING_DEFAULT_PLAN)?
            .filter(|p| !p.is_empty()))
    }

    /// Removes a catalog entry of any kind; `force` (providers and plans) takes what still
    /// refers to it along.
    pub fn remove_entry(
        &self,
        kind: EntryKind,
        name: &str,
        force: bool,
        now: u64,
    ) -> Result<Removed, PlaneError> {
        match kind {
            EntryKind::Provider => self.remove_provider(name, force, now),
            EntryKind::Route => self.remove_route(name, now),
            EntryKind::Plan => self.remove_plan(name, force, now),
            EntryKind::Price => self.remove_price(name, now),
        }
    }

    pub fn put_route(&self, route: RouteConfig, now: u64) -> Result<(), PlaneError> {
        self.serialized(|| {
            self.check_with(now, |config| {
                match config.routes.iter_mut().find(|r| r.name == route.name) {
                    Some(existing) => *existing = route.clone(),
                    None => config.routes.push(route.clone()),
                }
            })?;
            self.store.put_route(&route)?;
            self.audit(now, "route.put", &route.name, &route.path_prefix)?;
            Ok(())
        })
    }

    pub fn put_plan(&self, name: &str, plan: PlanConfig, now: u64) -> Result<(), PlaneError> {
        // The filter ignores `spike` (the control plane acts on it): it is checked here.
        if let Some(spike) = &plan.spike {
            spikes::check_spike_config(spike)?;
        }
        self.serialized(|| {
            self.check_with(now, |config| {
                config.plans.insert(name.to_string(), plan.clone());
            })?;
            self.store.put_plan(name, &plan)?;
            self.audit(
                now,
                "plan.put",
                name,
                &format!("{} limits", plan.limits.len()),
            )?;
            Ok(())
        })
    }

    pub fn put_price(&self, price: PriceConfig, now: u64) -> Result<(), PlaneError> {
        self.serialized(|| {
            self.check_with(now, |config| {
                config.prices.retain(|p| p.model != price.model);
                config.prices.push(price.clone());
            })?;
            self.store.put_price(&price)?;
            self.audit(now, "price.put", &price.model, "")?;
            Ok(())
        })
    }

    pub fn set_default_plan(&self, plan: Option<&str>, now: u64) -> Result<(), PlaneError> {
        self.serialized(|| {
            self.check_with(now, |config| config.default_plan = plan.map(str::to_string))?;
            self.store
                .set_setting(SETTING_DEFAULT_PLAN, plan.unwrap_or(""))?;
            self.audit(now, "plan.default", plan.unwrap_or("(none)"), "")?;
            Ok(())
        })
    }

    /// Removes a provider. Refused while a route sends to it, unless `force`: then those
    /// routes are removed too (a route cannot name a provider that is gone: the filter would
    /// refuse the whole configuration).
    pub fn remove_provider(
        &self,
        name: &str,
        force: bool,
        now: u64,
    ) -> Result<Removed, PlaneError> {
        self.serialized(|| {
            if !self
                .store
                .providers()?
                .iter()
                .any(|p| p.config.name == name)
            {
                return Err(PlaneError::NotFound(format!("provider {name:?}")));
            }
            let routes: Vec<String> = self
                .store
                .routes()?
                .iter()
                .filter(|r| route_uses(r, name))
                .map(|r| r.name.clone())
                .collect();
            if !routes.is_empty() && !force {
                return Err(PlaneError::InUse(format!(
                    "provider {name:?} is used by {}: remove or change them first, or force the removal ({FORCE_HINT}) to remove them with it",
                    quoted("route", &routes)
                )));
            }
            self.check_with(now, |config| {
                config.routes.retain(|r| !routes.contains(&r.name));
                config.providers.retain(|p| p.name != name);
            })?;
            // The routes first: a reader between two statements (another process's render)
            // sees a configuration the filter accepts.
            for route in &routes {
                self.store.remove(CatalogEntry::Route(route))?;
                self.audit(now, "route.remove", route, &format!("with provider {name}"))?;
            }
            self.store.remove(CatalogEntry::Provider(name))?;
            let detail = if routes.is_empty() {
                String::new()
            } else {
                format!("forced: with {}", quoted("route", &routes))
            };
            self.audit(now, "provider.remove", name, &detail)?;
            Ok(Removed {
                routes,
                ..Removed::default()
            })
        })
    }

    /// Removes a route; nothing else names one.
    pub fn remove_route(&self, name: &str, now: u64) -> Result<Removed, PlaneError> {
        self.serialized(|| {
            if !self.store.routes()?.iter().any(|r| r.name == name) {
                return Err(PlaneError::NotFound(format!("route {name:?}")));
            }
            self.check_with(now, |config| config.routes.retain(|r| r.name != name))?;
            self.store.remove(CatalogEntry::Route(name))?;
            self.audit(now, "route.remove", name, "")?;
            Ok(Removed::default())
        })
    }

    /// Removes a plan. Never the default plan (credentials naming no plan would lose their
    /// limits without anyone saying so: choose the default first). Refused while an API key
    /// in force names it, unless `force`: those keys are then revoked, as the filter refuses
    /// every credential naming a plan it does not have (tokens naming it included).
    pub fn remove_plan(&self, name: &str, force: bool, now: u64) -> Result<Removed, PlaneError> {
        self.serialized(|| {
            if !self.store.plans()?.iter().any(|(n, _)| n == name) {
                return Err(PlaneError::NotFound(format!("plan {name:?}")));
            }
            if self.store.setting(SETTING_DEFAULT_PLAN)?.as_deref() == Some(name) {
                return Err(PlaneError::InUse(format!(
                    "plan {name:?} is the default plan: make another plan the default (`plan default NAME`) or have none (`plan default --none`) first"
                )));
            }
            let keys: Vec<String> = self
                .store
                .api_keys()?
                .into_iter()
                .filter(|k| k.in_force(now) && k.plan.as_deref() == Some(name))
                .map(|k| k.id)
                .collect();
            if !keys.is_empty() && !force {
                return Err(PlaneError::InUse(format!(
                    "plan {name:?} is named by {}: revoke them first, or force the removal ({FORCE_HINT}) to revoke them with it",
                    quoted("API key", &keys)
                )));
            }
            self.check_with(now, |config| {
                config.plans.remove(name);
                config.api_keys.retain(|k| k.plan.as_deref() != Some(name));
            })?;
            for id in &keys {
                self.revoke(&Revocation::ApiKey(id.clone()), now)?;
            }
            self.store.remove(CatalogEntry::Plan(name))?;
            let detail = if keys.is_empty() {
                String::new()
            } else {
                format!("forced: revoked {}", quoted("API key", &keys))
            };
            self.audit(now, "plan.remove", name, &detail)?;
            Ok(Removed {
                revoked_api_keys: keys,
                ..Removed::default()
            })
        })
    }

    /// Removes a model's price. Not the last one while a plan counts cost: such a plan
    /// could price nothing.
    pub fn remove_price(&self, model: &str, now: u64) -> Result<Removed, PlaneError> {
        self.serialized(|| {
            let prices = self.store.prices()?;
            if !prices.iter().any(|p| p.model == model) {
                return Err(PlaneError::NotFound(format!("price for {model:?}")));
            }
            if prices.len() == 1 {
                let counting: Vec<String> = self
                    .store
                    .plans()?
                    .into_iter()
                    .filter(|(_, plan)| {
                        plan.limits
                            .iter()
                            .any(|l| l.metric == tokenward_filter::config::Metric::CostMicroUsd)
                    })
                    .map(|(name, _)| name)
                    .collect();
                if !counting.is_empty() {
                    return Err(PlaneError::InUse(format!(
                        "the price for {model:?} is the last one and {} count cost: set another price or remove their cost limits first",
                        quoted("plan", &counting)
                    )));
                }
            }
            self.check_with(now, |config| config.prices.retain(|p| p.model != model))?;
            self.store.remove(CatalogEntry::Price(model))?;
            self.audit(now, "price.remove", model, "")?;
            Ok(Removed::default())
        })
    }
}
