//! Value shapes compose files use and the target keeps: a list or a map,
//! sizes with units, CPU counts, Go-style durations. Each parses strictly
//! and serializes to one canonical form (so equal meaning, equal hash).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::target::strict::quoted as q;

/// `["a", "b"]` or `{"a": {...}, "b": null}`: names with default values,
/// or names with values (`null` meaning the default).
pub fn list_or_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de> + Default,
{
    struct V2<K, V>(PhantomData<(K, V)>);
    impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de> + Default> Visitor<'de> for V2<K, V> {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of names or a map of name to settings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = seq.next_element::<K>()? {
                if out.insert(k, V::default()).is_some() {
                    return Err(de::Error::custom("a name is listed twice"));
                }
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<K>()? {
                let v: Option<V> = map.next_value()?;
                out.insert(k, v.unwrap_or_default());
            }
            Ok(out)
        }
    }
    d.deserialize_any(V2(PhantomData))
}

/// A size in bytes: a number, or a string with a unit (`b`, `k`/`kb`,
/// `m`/`mb`, `g`/`gb`, powers of 1024, as compose reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "{} is not a size like \"512m\", \"2g\" or a number of bytes",
                    q(s)
                ))
            }
        };
        let n: f64 = num
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| {
                format!(
                    "{} is not a size like \"512m\", \"2g\" or a number of bytes",
                    q(s)
                )
            })?;
        let bytes = n * mult as f64;
        // "0.5" would be 0 bytes: no limit (or the engine's default), not
        // what was asked for.
        if bytes > 0.0 && bytes < 1.0 {
            return Err(format!(
                "{} is less than one byte; give 0 for none, or a size like \"512m\"",
                q(s)
            ));
        }
        if bytes > i64::MAX as f64 {
            return Err(format!("{} is too large", q(s)));
        }
        Ok(Bytes(bytes as u64))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: a number of bytes or a string like \"512m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                if v > i64::MAX as u64 {
                    return Err(E::custom("size is too large"));
                }
                Ok(Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Bytes::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// CPUs as a fraction (`0.5`, `"1.5"`), kept as billionths (the engine's
/// `NanoCpus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NanoCpus(pub u64);

impl NanoCpus {
    fn from_f64(v: f64) -> Result<Self, String> {
        if !v.is_finite() || v <= 0.0 || v > 1024.0 {
            return Err(format!(
                "{v} is not a number of CPUs (more than 0, at most 1024)"
            ));
        }
        Ok(NanoCpus((v * 1e9).round() as u64))
    }
}

impl Serialize for NanoCpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1e9)
    }
}

impl<'de> Deserialize<'de> for NanoCpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NanoCpus;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of CPUs like 0.5")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NanoCpus, E> {
                NanoCpus::from_f64(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NanoCpus, E> {
                NanoCpus::from_f64(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NanoCpus, E> {
                NanoCpus::from_f64(v as f64).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NanoCpus, E> {
                let n: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("{} is not a number of CPUs like 0.5", q(v))))?;
                NanoCpus::from_f64(n).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as compose writes it (Go syntax): `90s`, `1m30s`, `1.5s`,
/// `500ms`, `2h`; units `ns`, `us`, `ms`, `s`, `m`, `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{} is not a duration like \"30s\", \"1m30s\" or \"500ms\"",
                q(s)
            )
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        if rest == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        let mut total: f64 = 0.0;
        while !rest.is_empty() {
            let n = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .ok_or_else(bad)?;
            if n == 0 {
                return Err(bad());
            }
            let value: f64 = rest[..n].parse().map_err(|_| bad())?;
            rest = &rest[n..];
            let u = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let nanos = match &rest[..u] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(bad()),
            };
            rest = &rest[u..];
            total += value * nanos;
        }
        if total > 1e18 {
            return Err(format!("{} is too long", q(s)));
        }
        Ok(GoDuration(Duration::from_nanos(total.round() as u64)))
    }

    /// Canonical text: the largest unit that keeps it whole.
    pub fn to_text(self) -> String {
        let ns = self.0.as_nanos();
        for (unit, size) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if ns % size == 0 {
                return format!("{}{unit}", ns / size);
            }
        }
        format!("{ns}ns")
    }

    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(de::Error::custom)
    }
}

/// A string, or a list of strings (`dns`, a healthcheck's `test`).
pub fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_compose_writes_them() {
        let d = |s| GoDuration::parse(s).map(|d| d.0);
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1h5m"), Ok(Duration::from_secs(3900)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1m 30s"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert_eq!(GoDuration(Duration::from_secs(90)).to_text(), "90s");
        assert_eq!(GoDuration(Duration::from_millis(1500)).to_text(), "1500ms");
        assert_eq!(GoDuration(Duration::from_secs(120)).to_text(), "2m");
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(Bytes::parse("512m"), Ok(Bytes(512 << 20)));
        assert_eq!(Bytes::parse("1g"), Ok(Bytes(1 << 30)));
        assert_eq!(Bytes::parse("64kb"), Ok(Bytes(64 << 10)));
        assert_eq!(Bytes::parse("100"), Ok(Bytes(100)));
        assert!(Bytes::parse("12q").is_err());
        assert_eq!(
            serde_json::from_str::<NanoCpus>("\"0.5\"").unwrap(),
            NanoCpus(500_000_000)
        );
        assert_eq!(
            serde_json::from_str::<NanoCpus>("2").unwrap(),
            NanoCpus(2_000_000_000)
        );
        assert!(serde_json::from_str::<NanoCpus>("0").is_err());
        assert_eq!(
            serde_json::to_string(&NanoCpus(1_500_000_000)).unwrap(),
            "1.5"
        );
    }
}
