//! The CNI network configuration on stdin (with prevResult and GC attachments): parsing never
//! panics; an accepted configuration satisfies the documented checks, and its prevResult
//! survives a print/parse round trip (what the plugin answers on ADD is parsed by the next
//! plugin and handed back on CHECK/DEL).
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_cni::netconf::{NetConf, MAX_AGENT_WAIT_SECONDS, MTU_RANGE};
use overlay_cni::result::CniResult;

fuzz_target!(|data: &[u8]| {
    let Ok(conf) = NetConf::parse(data) else {
        return;
    };
    assert!(overlay_cni::SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    assert!(conf
        .name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric()));
    assert!(!conf.kind.is_empty());
    assert_ne!(conf.api.port(), 0);
    assert!(conf.mtu.is_none_or(|m| MTU_RANGE.contains(&m)));
    assert!(conf.agent_wait.as_secs() <= MAX_AGENT_WAIT_SECONDS);
    assert!(overlay_cni::env::check_ifname(&conf.bridge).is_ok());
    // NetConf::read takes the same bytes from a reader.
    assert_eq!(NetConf::read(&mut &data[..]).ok(), Some(conf.clone()));
    if let Some(prev) = &conf.prev_result {
        let json = prev.to_json().expect("a parsed result prints");
        let again: CniResult = serde_json::from_str(&json).expect("a printed result parses");
        assert_eq!(&again, prev, "prevResult round trip");
    }
});
