//! The waves a run of consecutive creates and starts goes in: a service's
//! steps after those of every service of the run it depends on that the
//! run starts. Found in one walk over the services and their dependencies
//! (a wave per level of the dependency graph): the run may hold every
//! service of an app (up to 1,000, each with many dependencies), and this
//! runs on the runtime thread that serves D-Bus, HTTP and the other apps.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::ServiceName;

/// `units` (a service and its steps, in plan order) in waves: each unit in
/// the wave after the latest of the units it waits for (a dependency other
/// than itself among the units that `starts`), the plan order kept within
/// a wave. Units caught in a cycle (which the parser refuses) and those
/// waiting on them go last, together, rather than never.
pub(super) fn waves<T>(
    units: Vec<(ServiceName, T)>,
    starts: impl Fn(&T) -> bool,
    deps: impl Fn(&ServiceName) -> Vec<ServiceName>,
) -> Vec<Vec<(ServiceName, T)>> {
    let n = units.len();
    let index: BTreeMap<&ServiceName, usize> =
        units.iter().enumerate().map(|(i, (s, _))| (s, i)).collect();
    // Per unit: how many of the units it waits for are not placed yet, and
    // which units wait for it.
    let mut waiting = vec![0usize; n];
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, (s, _)) in units.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for d in deps(s) {
            let Some(&j) = index.get(&d) else { continue };
            if j != i && starts(&units[j].1) && seen.insert(j) {
                waiting[i] += 1;
                dependants[j].push(i);
            }
        }
    }
    let mut level: Vec<Option<usize>> = vec![None; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    for &i in &ready {
        level[i] = Some(0);
    }
    while let Some(i) = ready.pop() {
        let next = level[i].expect("a ready unit has its wave") + 1;
        for &k in &dependants[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(k);
            }
            // Its wave is one after the latest it waits for.
            level[k] = Some(level[k].map_or(next, |l| l.max(next)));
        }
    }
    let placed = |i: usize| waiting[i] == 0;
    let last = (0..n)
        .filter(|&i| placed(i))
        .filter_map(|i| level[i])
        .max()
        .map_or(0, |l| l + 1);
    let mut out: Vec<Vec<(ServiceName, T)>> = Vec::new();
    for (i, unit) in units.into_iter().enumerate() {
        let l = match placed(i) {
            true => level[i].unwrap_or(0),
            false => last,
        };
        if out.len() <= l {
            out.resize_with(l + 1, Vec::new);
        }
        out[l].push(unit);
    }
    out.retain(|w| !w.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn name(i: usize) -> ServiceName {
        ServiceName::new(format!("s{i}")).unwrap()
    }

    /// The waves as the executor found them before: a pass over the units
    /// left per wave, each asked about each dependency (cubic and worse).
    fn by_passes<T>(
        mut units: Vec<(ServiceName, T)>,
        starts: impl Fn(&T) -> bool,
        deps: impl Fn(&ServiceName) -> Vec<ServiceName>,
    ) -> Vec<Vec<(ServiceName, T)>> {
        let mut out = Vec::new();
        while !units.is_empty() {
            let starting: Vec<ServiceName> = units
                .iter()
                .filter(|(_, t)| starts(t))
                .map(|(s, _)| s.clone())
                .collect();
            let (mut wave, mut rest): (Vec<_>, Vec<_>) = units
                .into_iter()
                .partition(|(s, _)| !deps(s).iter().any(|d| d != s && starting.contains(d)));
            if wave.is_empty() {
                wave = std::mem::take(&mut rest);
            }
            out.push(wave);
            units = rest;
        }
        out
    }

    fn names<T>(w: &[Vec<(ServiceName, T)>]) -> Vec<Vec<String>> {
        w.iter()
            .map(|w| w.iter().map(|(s, _)| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_waves_are_those_the_pass_by_pass_walk_found() {
        let mut seed = 0x9e37_79b9_u64;
        let mut next = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        for round in 0..500 {
            let n = 1 + next(10);
            // Dependencies on anything, themselves, services not in the run
            // (s10..) and, in some rounds, cycles; a unit starts or only
            // creates.
            let edges: Vec<(usize, usize)> = (0..next(3 * n + 1))
                .map(|_| (next(n), next(n + 2)))
                .filter(|(a, b)| round % 3 == 0 || b <= a || *b >= n)
                .collect();
            let order: Vec<usize> = {
                let mut o: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    o.swap(i, next(i + 1));
                }
                o
            };
            let units: Vec<(ServiceName, bool)> =
                order.iter().map(|&i| (name(i), next(4) != 0)).collect();
            let deps = |s: &ServiceName| -> Vec<ServiceName> {
                let i: usize = s.as_str()[1..].parse().unwrap();
                let far = |b: usize| if b >= n { b + 10 } else { b };
                edges
                    .iter()
                    .filter(|(a, _)| *a == i)
                    .map(|(_, b)| name(far(*b)))
                    .collect()
            };
            let starts = |t: &bool| *t;
            assert_eq!(
                names(&waves(units.clone(), starts, deps)),
                names(&by_passes(units, starts, deps)),
                "{edges:?} {order:?}"
            );
        }
    }

    #[test]
    fn a_thousand_services_of_many_dependencies_are_put_in_waves_at_once() {
        // s_i depends on the next 200 services: 1,000 waves, 200,000
        // dependencies. The pass-by-pass walk took about 10^11 steps.
        let n = 1000;
        let units: Vec<(ServiceName, ())> = (0..n).map(|i| (name(i), ())).collect();
        let deps = |s: &ServiceName| -> Vec<ServiceName> {
            let i: usize = s.as_str()[1..].parse().unwrap();
            (i + 1..n.min(i + 201)).map(name).collect()
        };
        let start = Instant::now();
        let w = waves(units, |_| true, deps);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(w.len(), n);
        assert_eq!(w[0][0].0, name(n - 1));
        assert_eq!(w[n - 1][0].0, name(0));
    }
}
