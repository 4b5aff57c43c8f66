//! The checks: [`ParamGuard::check`] turns parameters into [`Checked`] parameters, the only
//! form the fit functions take, or into a [`ParamError`] naming the rule that failed.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::table::{
    ALPHA, BETA, CONTAMINATION, EPS, MAX_FEATURES, MAX_SAMPLES, MIN_SAMPLES, N_BINS, N_CLUSTERS,
    N_COMPONENTS, N_ESTIMATORS, N_NEIGHBORS, N_SELECTED_COMPONENTS, P, ParamSpec, REG_COVAR,
    SUPPORT_FRACTION, TOL,
};
use super::{
    Bins, CblofParams, Contamination, DbscanParams, GmmParams, HbosParams, InneParams,
    IsolationForestParams, KnnParams, LofParams, MaxFeatures, MaxSamples, McdParams, Metric,
    NoParams, PcaParams,
};
use crate::DetectError;

/// One broken range rule, naming the parameter and the value it got. The rules and their
/// bounds are the parameter tables' ([`super::ISOLATION_FOREST`], [`super::LOF`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamError {
    /// `n_estimators` outside its range.
    NEstimators(usize),
    /// `max_samples` given as a count below 1.
    MaxSamplesCount(usize),
    /// `max_samples` given as a fraction outside (0, 1].
    MaxSamplesFraction(f64),
    /// `max_features` given as a count below 1.
    MaxFeaturesCount(usize),
    /// `max_features` given as a fraction outside (0, 1].
    MaxFeaturesFraction(f64),
    /// `n_neighbors` outside its range.
    NNeighbors(usize),
    /// The minkowski exponent `p` below its minimum, or not finite.
    MinkowskiP(f64),
    /// `contamination` outside (0, 0.5].
    Contamination(f64),
    /// HBOS's `n_bins` outside its range.
    NBins(usize),
    /// HBOS's `alpha` outside (0, 1).
    Alpha(f64),
    /// HBOS's `tol` outside (0, 1).
    Tol(f64),
    /// PCA's `n_components` below 1.
    NComponents(usize),
    /// PCA's `n_selected_components` below 1 or above `n_components`.
    NSelectedComponents(usize),
    /// GMM's `reg_covar` negative or not finite.
    RegCovar(f64),
    /// DBSCAN's `eps` not a positive finite number.
    Eps(f64),
    /// DBSCAN's `min_samples` outside its range.
    MinSamples(usize),
    /// MCD's `support_fraction` outside (0, 1].
    SupportFraction(f64),
    /// CBLOF's `n_clusters` outside its range.
    NClusters(usize),
    /// CBLOF's `beta` not above 1.
    Beta(f64),
}

impl ParamError {
    /// The table entry of the parameter whose rule failed.
    pub fn spec(&self) -> &'static ParamSpec {
        match self {
            ParamError::NEstimators(_) => &N_ESTIMATORS,
            ParamError::MaxSamplesCount(_) | ParamError::MaxSamplesFraction(_) => &MAX_SAMPLES,
            ParamError::MaxFeaturesCount(_) | ParamError::MaxFeaturesFraction(_) => &MAX_FEATURES,
            ParamError::NNeighbors(_) => &N_NEIGHBORS,
            ParamError::MinkowskiP(_) => &P,
            ParamError::Contamination(_) => &CONTAMINATION,
            ParamError::NBins(_) => &N_BINS,
            ParamError::Alpha(_) => &ALPHA,
            ParamError::Tol(_) => &TOL,
            ParamError::NComponents(_) => &N_COMPONENTS,
            ParamError::NSelectedComponents(_) => &N_SELECTED_COMPONENTS,
            ParamError::RegCovar(_) => &REG_COVAR,
            ParamError::Eps(_) => &EPS,
            ParamError::MinSamples(_) => &MIN_SAMPLES,
            ParamError::SupportFraction(_) => &SUPPORT_FRACTION,
            ParamError::NClusters(_) => &N_CLUSTERS,
            ParamError::Beta(_) => &BETA,
        }
    }

    /// The parameter's name.
    pub fn parameter(&self) -> &'static str {
        self.spec().name
    }

    /// What was wrong: the value and what the parameter accepts.
    pub fn reason(&self) -> String {
        let got = match *self {
            ParamError::NEstimators(i)
            | ParamError::MaxSamplesCount(i)
            | ParamError::MaxFeaturesCount(i)
            | ParamError::NNeighbors(i)
            | ParamError::NBins(i)
            | ParamError::NComponents(i)
            | ParamError::MinSamples(i)
            | ParamError::NClusters(i) => i.to_string(),
            ParamError::NSelectedComponents(i) => {
                return format!(
                    "got {i}; accepted: an integer in [1, n_components] (null: all components)"
                );
            }
            ParamError::MaxSamplesFraction(f)
            | ParamError::MaxFeaturesFraction(f)
            | ParamError::MinkowskiP(f)
            | ParamError::Contamination(f)
            | ParamError::Alpha(f)
            | ParamError::Tol(f)
            | ParamError::RegCovar(f)
            | ParamError::Eps(f)
            | ParamError::SupportFraction(f)
            | ParamError::Beta(f) => f.to_string(),
        };
        format!("got {got}; accepted: {}", self.spec().domain.accepted())
    }
}

/// The message of [`DetectError::InvalidParameter`], which this error converts into.
impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value for '{}': {}",
            self.parameter(),
            self.reason()
        )
    }
}

impl std::error::Error for ParamError {}

impl From<ParamError> for DetectError {
    fn from(e: ParamError) -> Self {
        DetectError::InvalidParameter {
            name: e.parameter().into(),
            reason: e.reason(),
        }
    }
}

/// Parameters with range rules (the pattern of linfa's `ParamGuard`): [`check`] is the
/// only way to a [`Checked`] value.
///
/// [`check`]: ParamGuard::check
pub trait ParamGuard: Sized {
    /// The first rule the parameters break, in table order.
    ///
    /// # Errors
    /// The broken rule.
    fn rules(&self) -> Result<(), ParamError>;

    /// The parameters, checked.
    ///
    /// # Errors
    /// The first rule they break.
    fn check(self) -> Result<Checked<Self>, ParamError> {
        self.rules()?;
        Ok(Checked(self))
    }
}

/// Parameters that passed [`ParamGuard::check`]. They read like the parameters themselves
/// (through `Deref`) but cannot be changed, so whoever holds one holds values in range.
/// Serialized they are the parameters; deserializing checks them again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked<P>(P);

impl<P> Checked<P> {
    /// The parameters, to change and check again.
    pub fn into_inner(self) -> P {
        self.0
    }
}

impl<P> Deref for Checked<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.0
    }
}

impl Checked<IsolationForestParams> {
    /// The seed to fit with: `random_state`, or one from `draw`, stored as `random_state`
    /// so the model records it. Every seed is in range, so the parameters stay checked.
    pub(crate) fn random_state_or_insert_with(&mut self, draw: impl FnOnce() -> u64) -> u64 {
        *self.0.random_state.get_or_insert_with(draw)
    }
}

impl Checked<InneParams> {
    /// As the isolation forest's: `random_state`, or a drawn seed stored as it.
    pub(crate) fn random_state_or_insert_with(&mut self, draw: impl FnOnce() -> u64) -> u64 {
        *self.0.random_state.get_or_insert_with(draw)
    }
}

impl Checked<CblofParams> {
    /// As the isolation forest's: `random_state`, or a drawn seed stored as it.
    pub(crate) fn random_state_or_insert_with(&mut self, draw: impl FnOnce() -> u64) -> u64 {
        *self.0.random_state.get_or_insert_with(draw)
    }
}

impl Checked<McdParams> {
    /// As the isolation forest's: `random_state`, or a drawn seed stored as it.
    pub(crate) fn random_state_or_insert_with(&mut self, draw: impl FnOnce() -> u64) -> u64 {
        *self.0.random_state.get_or_insert_with(draw)
    }
}

impl<P: Serialize> Serialize for Checked<P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, P: ParamGuard + Deserialize<'de>> Deserialize<'de> for Checked<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        P::deserialize(deserializer)?
            .check()
            .map_err(serde::de::Error::custom)
    }
}

impl ParamGuard for IsolationForestParams {
    fn rules(&self) -> Result<(), ParamError> {
        ensemble_rules(self.n_estimators, self.max_samples)?;
        let domain = MAX_FEATURES.domain;
        match self.max_features {
            MaxFeatures::Count(c) if !domain.admits_integer(c as u64) => {
                return Err(ParamError::MaxFeaturesCount(c));
            }
            MaxFeatures::Fraction(f) if !domain.admits_number(f) => {
                return Err(ParamError::MaxFeaturesFraction(f));
            }
            MaxFeatures::Count(_) | MaxFeatures::Fraction(_) => {}
        }
        // `bootstrap` and `random_state` take every value of their types.
        Ok(())
    }
}

/// `n_estimators` and `max_samples`, which the isolation forest and INNE share.
fn ensemble_rules(n_estimators: usize, max_samples: MaxSamples) -> Result<(), ParamError> {
    if !N_ESTIMATORS.domain.admits_integer(n_estimators as u64) {
        return Err(ParamError::NEstimators(n_estimators));
    }
    let domain = MAX_SAMPLES.domain;
    match max_samples {
        MaxSamples::Count(c) if !domain.admits_integer(c as u64) => {
            Err(ParamError::MaxSamplesCount(c))
        }
        MaxSamples::Fraction(f) if !domain.admits_number(f) => {
            Err(ParamError::MaxSamplesFraction(f))
        }
        MaxSamples::Auto | MaxSamples::Count(_) | MaxSamples::Fraction(_) => Ok(()),
    }
}

impl ParamGuard for InneParams {
    fn rules(&self) -> Result<(), ParamError> {
        ensemble_rules(self.n_estimators, self.max_samples)
    }
}

impl ParamGuard for LofParams {
    fn rules(&self) -> Result<(), ParamError> {
        if !N_NEIGHBORS.domain.admits_integer(self.n_neighbors as u64) {
            return Err(ParamError::NNeighbors(self.n_neighbors));
        }
        match self.metric {
            Metric::Minkowski(p) if !P.domain.admits_number(p) => Err(ParamError::MinkowskiP(p)),
            Metric::Euclidean | Metric::Manhattan | Metric::Minkowski(_) => Ok(()),
        }
    }
}

impl ParamGuard for NoParams {
    fn rules(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

impl ParamGuard for HbosParams {
    fn rules(&self) -> Result<(), ParamError> {
        if let Bins::Count(c) = self.n_bins
            && !N_BINS.domain.admits_integer(c as u64)
        {
            return Err(ParamError::NBins(c));
        }
        if !ALPHA.domain.admits_number(self.alpha) {
            return Err(ParamError::Alpha(self.alpha));
        }
        if !TOL.domain.admits_number(self.tol) {
            return Err(ParamError::Tol(self.tol));
        }
        Ok(())
    }
}

impl ParamGuard for KnnParams {
    fn rules(&self) -> Result<(), ParamError> {
        LofParams {
            n_neighbors: self.n_neighbors,
            metric: self.metric,
        }
        .rules()
    }
}

impl ParamGuard for PcaParams {
    fn rules(&self) -> Result<(), ParamError> {
        if let Some(c) = self.n_components
            && !N_COMPONENTS.domain.admits_integer(c as u64)
        {
            return Err(ParamError::NComponents(c));
        }
        if let Some(s) = self.n_selected_components {
            let above = self.n_components.is_some_and(|c| s > c);
            if s == 0 || above {
                return Err(ParamError::NSelectedComponents(s));
            }
        }
        Ok(())
    }
}

impl ParamGuard for GmmParams {
    fn rules(&self) -> Result<(), ParamError> {
        if REG_COVAR.domain.admits_number(self.reg_covar) {
            Ok(())
        } else {
            Err(ParamError::RegCovar(self.reg_covar))
        }
    }
}

impl ParamGuard for McdParams {
    fn rules(&self) -> Result<(), ParamError> {
        match self.support_fraction {
            Some(f) if !SUPPORT_FRACTION.domain.admits_number(f) => {
                Err(ParamError::SupportFraction(f))
            }
            // `assume_centered` and `random_state` take every value of their types.
            _ => Ok(()),
        }
    }
}

impl ParamGuard for CblofParams {
    fn rules(&self) -> Result<(), ParamError> {
        if !N_CLUSTERS.domain.admits_integer(self.n_clusters as u64) {
            return Err(ParamError::NClusters(self.n_clusters));
        }
        if !ALPHA.domain.admits_number(self.alpha) {
            return Err(ParamError::Alpha(self.alpha));
        }
        if !BETA.domain.admits_number(self.beta) {
            return Err(ParamError::Beta(self.beta));
        }
        // `use_weights` and `random_state` take every value of their types.
        Ok(())
    }
}

impl ParamGuard for DbscanParams {
    fn rules(&self) -> Result<(), ParamError> {
        if !EPS.domain.admits_number(self.eps) {
            return Err(ParamError::Eps(self.eps));
        }
        if !MIN_SAMPLES.domain.admits_integer(self.min_samples as u64) {
            return Err(ParamError::MinSamples(self.min_samples));
        }
        LofParams {
            n_neighbors: 1,
            metric: self.metric,
        }
        .rules()
    }
}

impl ParamGuard for Contamination {
    fn rules(&self) -> Result<(), ParamError> {
        match *self {
            Contamination::Fraction(f) if !CONTAMINATION.domain.admits_number(f) => {
                Err(ParamError::Contamination(f))
            }
            Contamination::Auto | Contamination::Fraction(_) => Ok(()),
        }
    }
}
