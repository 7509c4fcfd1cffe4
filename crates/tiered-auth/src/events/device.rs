//! What "a device" means for new-sign-in alerts: the browser family and OS family read
//! from the `User-Agent` header, and the client address's network (/24 for IPv4, /48
//! for IPv6), so that a new browser version or a new address from the same provider's
//! block is not a new device, while another browser, system or network is.
//!
//! A small parser of our own rather than a user-agent crate: the families are all we
//! need, the light crates carry large regex databases (uap-core) or a build step, and
//! these few rules are tested here.

use std::net::IpAddr;

use cache_core::Cidr;

/// A device as the event log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// For people: "Firefox on Linux".
    pub summary: String,
    /// What "the same device" compares: `Firefox|Linux|192.0.2.0/24`.
    pub key: String,
}

impl Device {
    /// The device of a client with this `User-Agent` and address.
    pub fn of(user_agent: Option<&str>, ip: Option<IpAddr>) -> Self {
        let ua = user_agent.unwrap_or("");
        let (browser, os) = (browser_family(ua), os_family(ua));
        let network = ip.and_then(network).map_or_else(|| "-".to_owned(), |n| n.to_string());
        Device { summary: summary(ua), key: format!("{browser}|{os}|{network}") }
    }
}

/// "Firefox on Linux", for people (account pages, mails): what the families tell, and
/// no "Other" (an unknown browser or system is named so, or left out).
pub fn summary(user_agent: &str) -> String {
    match (browser_family(user_agent), os_family(user_agent)) {
        ("Other", "Other") => "Unknown device".to_owned(),
        (browser, "Other") => browser.to_owned(),
        ("Other", os) => format!("Unknown browser on {os}"),
        (browser, os) => format!("{browser} on {os}"),
    }
}

/// The /24 (IPv4) or /48 (IPv6) around `ip`.
pub fn network(ip: IpAddr) -> Option<Cidr> {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    Cidr::new(ip, prefix)
}

/// The browser family: Edge, Opera, Firefox, Chrome, Safari, curl, or Other. The order
/// matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
pub fn browser_family(ua: &str) -> &'static str {
    let has = |needle: &str| ua.contains(needle);
    if has("Edg/") || has("EdgA/") || has("EdgiOS/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") || has("OPT/") {
        "Opera"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        "Chrome"
    } else if has("Safari/") && has("Version/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else {
        "Other"
    }
}

/// The OS family: Windows, macOS, iOS, Android, Linux, or Other. iOS before macOS (an
/// iPhone says "like Mac OS X"), Android before Linux.
pub fn os_family(ua: &str) -> &'static str {
    let has = |needle: &str| ua.contains(needle);
    if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Linux") || has("X11") || has("CrOS") {
        "Linux"
    } else {
        "Other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51";
    const OPERA_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const CHROME_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const FIREFOX_ANDROID: &str =
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0";

    #[test]
    fn common_browsers_and_systems() {
        let cases = [
            (CHROME_WIN, "Chrome", "Windows"),
            (EDGE_WIN, "Edge", "Windows"),
            (OPERA_MAC, "Opera", "macOS"),
            (FIREFOX_LINUX, "Firefox", "Linux"),
            (SAFARI_MAC, "Safari", "macOS"),
            (SAFARI_IPHONE, "Safari", "iOS"),
            (CHROME_IOS, "Chrome", "iOS"),
            (CHROME_ANDROID, "Chrome", "Android"),
            (FIREFOX_ANDROID, "Firefox", "Android"),
            ("curl/8.5.0", "curl", "Other"),
            ("", "Other", "Other"),
            ("python-requests/2.31", "Other", "Other"),
        ];
        for (ua, browser, os) in cases {
            assert_eq!((browser_family(ua), os_family(ua)), (browser, os), "{ua}");
        }
    }

    #[test]
    fn a_device_is_families_and_network() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let a = Device::of(Some(FIREFOX_LINUX), ip("192.0.2.7"));
        assert_eq!(a.summary, "Firefox on Linux");
        assert_eq!(a.key, "Firefox|Linux|192.0.2.0/24");
        // Another version of the browser, another address of the /24: the same device.
        let newer = FIREFOX_LINUX.replace("125.0", "126.0");
        assert_eq!(Device::of(Some(&newer), ip("192.0.2.200")).key, a.key);
        // Another network, another browser: another device.
        assert_ne!(Device::of(Some(FIREFOX_LINUX), ip("198.51.100.7")).key, a.key);
        assert_ne!(Device::of(Some(CHROME_WIN), ip("192.0.2.7")).key, a.key);
        // IPv6 by /48; IPv4-mapped addresses as IPv4.
        let v6 = Device::of(None, ip("2001:db8:1:2::1"));
        assert_eq!(v6.key, "Other|Other|2001:db8:1::/48");
        assert_eq!(Device::of(None, ip("::ffff:192.0.2.9")).key, "Other|Other|192.0.2.0/24");
        assert_eq!(Device::of(None, None).key, "Other|Other|-");
    }

    #[test]
    fn summaries_name_what_is_known() {
        assert_eq!(summary(SAFARI_IPHONE), "Safari on iOS");
        assert_eq!(summary("curl/8.5.0"), "curl");
        assert_eq!(summary("Mozilla/5.0 (X11; Linux x86_64) Lynx"), "Unknown browser on Linux");
        assert_eq!(summary(""), "Unknown device");
        assert_eq!(summary("<script>"), "Unknown device");
    }
}
