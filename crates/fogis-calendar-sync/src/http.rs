//! HTTP: the service's API. Routes and handlers ([`api`]), who may call what ([`auth`]), the
//! feeds' validators ([`feeds`]), the body-less sync trigger ([`trigger`]), the status page
//! ([`status_page`]) and the server with its limits ([`serve`]).

pub mod api;
pub mod auth;
pub mod feeds;
pub mod serve;
pub mod status_page;
pub mod trigger;
