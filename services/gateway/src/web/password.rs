//! Changing one's password on the web: the page a login leads to when the
//! password was set by someone else (a worker's reset, the demo data), and the
//! form's handler, which changes it and signs the person in.

use axum::extract::{Extension, Form, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{PageQuery, html, lang_of};
use super::render::layout;
use super::session;
use super::{Lang, State, WebError};
use crate::client::ClientAddr;

/// The change-password page for `username`, with the login form's nonce.
pub fn form(lang: Lang, nonce: &str, username: &str, error: Option<&str>) -> Response {
    let mut resp = html(
        lang,
        &PageQuery::default(),
        page(lang, nonce, username, error),
    );
    *resp.status_mut() = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    resp
}

fn page(lang: Lang, nonce: &str, username: &str, error: Option<&str>) -> Markup {
    layout(
        lang,
        lang.t("修改密码", "Change your password"),
        None,
        html! {
            main.narrow {
                h1 { (lang.t("修改密码", "Change your password")) }
                p { (lang.t(
                    "这个密码是别人为您设置的。请先换一个只有您知道的密码，至少 8 个字符。",
                    "This password was set by someone else. Choose one only you know first, at least 8 characters.",
                )) }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/password" {
                    input type="hidden" name="nonce" value=(nonce);
                    label { (lang.t("用户名", "Username"))
                        input #username type="text" name="username" value=(username) autocomplete="username" required readonly; }
                    label { (lang.t("现在的密码", "Current password"))
                        input #current type="password" name="current" autocomplete="current-password" required autofocus; }
                    label { (lang.t("新密码", "New password"))
                        input #new type="password" name="new" autocomplete="new-password" minlength="8" required; }
                    label { (lang.t("再输一次新密码", "New password again"))
                        input #repeat type="password" name="repeat" autocomplete="new-password" minlength="8" required; }
                    button #change type="submit" { (lang.t("修改并登录", "Change and log in")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    nonce: String,
    username: String,
    current: String,
    new: String,
    repeat: String,
}

pub async fn change(
    Extract(state): Extract<State>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let lang = lang_of(&headers, &PageQuery::default());
    let Some(expected) = session::login_nonce(&headers, &f.nonce) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let again = |error: &str| Ok(form(lang, expected, &f.username, Some(error)));
    if f.new != f.repeat {
        return again(lang.t("两次输入的新密码不一样。", "The new passwords differ."));
    }
    if f.new.chars().count() < 8 {
        return again(lang.t(
            "新密码至少 8 个字符。",
            "The new password needs at least 8 characters.",
        ));
    }
    if f.new == f.current {
        return again(lang.t(
            "新密码不能和现在的一样。",
            "The new password must differ from the current one.",
        ));
    }
    let changed = state
        .auth
        .change_password_of(
            f.username.clone(),
            f.current.clone(),
            f.new.clone(),
            &client.to_string(),
        )
        .await;
    let account = match changed {
        Ok(a) => a,
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            return again(lang.t("现在的密码不对。", "The current password is wrong."));
        }
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            return again(lang.t(
                "失败次数过多，请稍后再试。",
                "Too many failed attempts; try again later.",
            ));
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => return again(s.message()),
        Err(s) => return Err(s.into()),
    };
    Ok(session::signed_in(&state, &account).await?)
}
