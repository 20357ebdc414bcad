//! ISO 3166-1 alpha-2: the country codes Microsoft 365 takes as a user's usage location.
//!
//! The 249 officially assigned codes (no crate: one sorted list, checked against the ISO
//! 3166-1 data of the pycountry package when written). `UK` is not among them — the United
//! Kingdom is `GB` — which is the mistake this check exists to catch before Graph refuses a
//! licence assignment with "invalid usage location".

const ASSIGNED: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
    EC EE EG EH ER ES ET FI FJ FK FM FO FR \
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
    ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
    LA LB LC LI LK LR LS LT LU LV LY \
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
    NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
    RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
    VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (upper case, as Graph spells it).
pub fn is_assigned(code: &str) -> bool {
    code.len() == 2 && ASSIGNED.split_ascii_whitespace().any(|c| c == code)
}

/// The assigned code a consultant most likely meant by `code`, for a hint.
pub fn suggestion(code: &str) -> Option<String> {
    let upper = code.trim().to_ascii_uppercase();
    match upper.as_str() {
        "UK" => Some("GB".into()),
        _ if upper != code && is_assigned(&upper) => Some(upper),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_assigned_codes() {
        let codes: Vec<&str> = ASSIGNED.split_ascii_whitespace().collect();
        assert_eq!(codes.len(), 249);
        assert!(
            codes.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(is_assigned("GB") && is_assigned("US") && is_assigned("DE"));
        assert!(!is_assigned("UK") && !is_assigned("gb") && !is_assigned("GBR"));
        assert_eq!(suggestion("UK").as_deref(), Some("GB"));
        assert_eq!(suggestion("de").as_deref(), Some("DE"));
        assert_eq!(suggestion("XX"), None);
    }
}
