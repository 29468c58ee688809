//! A CNI prevResult: parsing never panics; a parsed result prints and parses back equal; the
//! ADD merge (`chain::add_result`) appends this plugin's interfaces, addresses and route with
//! shifted interface indices and keeps everything else; CHECK's reading of it
//! (`chain::expected`) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_cni::chain::{add_result, expected};
use overlay_cni::result::{CniResult, Dns, Interface, IpConfig, Route};
use overlay_proto::api::Allocation;
use std::path::Path;

fn ours() -> CniResult {
    let iface = |name: &str, sandbox: Option<&str>| Interface {
        name: name.into(),
        mac: "02:00:00:00:00:01".into(),
        mtu: Some(1410),
        sandbox: sandbox.map(Into::into),
        extra: Default::default(),
    };
    CniResult {
        cni_version: "1.1.0".into(),
        interfaces: vec![
            iface("vethabc", None),
            iface("eth0", Some("/var/run/netns/p")),
        ],
        ips: vec![IpConfig {
            address: "10.32.1.2/24".parse().expect("net"),
            gateway: Some("10.32.1.1".parse().expect("ip")),
            interface: Some(1),
            extra: Default::default(),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().expect("net"),
            gw: Some("10.32.1.1".parse().expect("ip")),
            extra: Default::default(),
        }],
        dns: Dns::default(),
        extra: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(prev) = serde_json::from_slice::<CniResult>(data) else {
        return;
    };
    let json = prev.to_json().expect("prints");
    let again: CniResult = serde_json::from_str(&json).expect("parses back");
    assert_eq!(again, prev, "round trip");

    let mine = ours();
    let merged = add_result(Some(&prev), mine.clone());
    let n = prev.interfaces.len();
    assert_eq!(merged.cni_version, mine.cni_version);
    assert_eq!(merged.interfaces[..n], prev.interfaces[..]);
    assert_eq!(merged.interfaces[n..], mine.interfaces[..]);
    assert_eq!(merged.ips[..prev.ips.len()], prev.ips[..]);
    for (m, o) in merged.ips[prev.ips.len()..].iter().zip(&mine.ips) {
        assert_eq!(m.interface, o.interface.map(|i| i + n));
        assert_eq!(m.address, o.address);
    }
    assert_eq!(merged.routes.len(), prev.routes.len() + mine.routes.len());
    assert_eq!((&merged.dns, &merged.extra), (&prev.dns, &prev.extra));

    let allocation = Allocation {
        address: "10.32.1.2/24".parse().expect("net"),
        gateway: "10.32.1.1".parse().expect("ip"),
        cluster: "10.32.0.0/12".parse().expect("net"),
        mtu: 1410,
    };
    let ns = Path::new("/var/run/netns/p");
    let _ = expected(&prev, "abc", "eth0", ns, &allocation);
    let _ = expected(&merged, "abc", "eth0", ns, &allocation);
});
