//! Built-in study files: the seed's scenarios and two small studies, so
//! `hps-master init DIR --preset s5` needs no file of its own. The texts are
//! the files in `examples/`, compiled in.

/// Names accepted by [`preset`], in the order they are listed to the user.
pub const PRESETS: &[&str] = &["quickstart", "branin", "asha", "s1", "s2", "s3", "s4", "s5"];

/// The JSON text of the study file named `name`, or `None` if there is no
/// such preset.
pub fn preset(name: &str) -> Option<&'static str> {
    Some(match name {
        "s1" => include_str!("../../examples/s1.json"),
        "s2" => include_str!("../../examples/s2.json"),
        "s3" => include_str!("../../examples/s3.json"),
        "s4" => include_str!("../../examples/s4.json"),
        "s5" => include_str!("../../examples/s5.json"),
        "quickstart" => include_str!("../../examples/quickstart.json"),
        "branin" => include_str!("../../examples/branin.json"),
        "asha" => include_str!("../../examples/asha.json"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::{parse_versioned, Study};
    use serde_json::Value;
    use std::path::PathBuf;

    fn parse(name: &str) -> Study {
        let text = preset(name).unwrap_or_else(|| panic!("no preset {name}"));
        let file = PathBuf::from(format!("examples/{name}.json"));
        parse_versioned::<Study>(&file, text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_preset_parses_with_its_trial_count() {
        let expected = [
            ("s1", 21),
            ("s2", 9),
            ("s3", 9),
            ("s4", 9),
            ("s5", 200),
            ("quickstart", 8),
            ("branin", 200),
            ("asha", 60),
        ];
        assert_eq!(PRESETS.len(), expected.len());
        for (name, n) in expected {
            assert!(PRESETS.contains(&name), "{name} missing from PRESETS");
            let study = parse(name);
            assert_eq!(study.total_trials().unwrap(), n, "{name}");
        }
        assert!(preset("s6").is_none());
    }

    #[test]
    fn s5_is_the_seed_parameterisation() {
        for name in ["s5", "quickstart"] {
            let s = parse(name);
            assert_eq!(s.space["nf"].from_unit(0.5), Value::from(55), "{name}");
            assert_eq!(
                s.space["batch_size"].from_unit(0.5),
                Value::from(64),
                "{name}"
            );
            assert_eq!(
                s.space["momentum"].from_unit(0.5).as_f64(),
                Some(0.5),
                "{name}"
            );
            let lr = s.space["lr"].from_unit(0.5).as_f64().unwrap();
            assert!((lr - 10f64.powf(-1.25)).abs() < 1e-15, "{name}: lr {lr}");
            // The ends of the seed's ranges: nf in [10, 100), batch in [16, 256).
            assert_eq!(s.space["nf"].from_unit(0.0), Value::from(10), "{name}");
            assert_eq!(
                s.space["batch_size"].from_unit(0.0),
                Value::from(16),
                "{name}"
            );
        }
        assert_eq!(parse("s5").budget.time_limit_s, Some(60.0));
    }
}
