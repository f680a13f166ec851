//! How personal contact details read for those who may not see them whole:
//! enough to recognise (the operator's prefix, the last digits, a surname),
//! not enough to call or write.

/// 13812345678 → 138****5678.
pub fn mask_phone(phone: &str) -> String {
    let n = phone.chars().count();
    if n <= 7 {
        return "*".repeat(n);
    }
    let keep_end = 4;
    let keep_start = 3.min(n - keep_end);
    let start: String = phone.chars().take(keep_start).collect();
    let end: String = phone.chars().skip(n - keep_end).collect();
    format!("{start}{}{end}", "*".repeat(n - keep_start - keep_end))
}

/// zhang.wei@example.cn → z***@example.cn.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "*".repeat(email.chars().count().min(8)),
    }
}

/// 张伟 → 张*; Wei Zhang → W***.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => format!("{first}{}", "*".repeat(chars.count().clamp(1, 3))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_recognises() {
        assert_eq!(mask_phone("13912341001"), "139****1001");
        assert_eq!(mask_phone("1234567"), "*******");
        assert_eq!(mask_email("zhang.wei@example.cn"), "z***@example.cn");
        assert_eq!(mask_email("nonsense"), "********");
        assert_eq!(mask_name("张伟"), "张*");
        assert_eq!(mask_name("Wei Zhang"), "W***");
        assert_eq!(mask_name(""), "");
    }
}
