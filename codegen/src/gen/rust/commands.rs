//! The `Commands` trait (one method per command), the command table and the
//! dispatcher.

use proc_macro2::TokenStream;
use quote::quote;

use super::names::{ident, snake};
use super::Ctx;
use crate::model::*;

/// Doc paragraphs of a command for its trait method.
fn command_doc(e: &Entity) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(d) = &e.doc {
        v.extend(d.body.iter().cloned());
        if let Some(r) = d.section("Returns") {
            v.push(format!("Returns: {r}"));
        }
        if let Some(s) = d.section("Since") {
            v.push(format!("Since: {s}"));
        }
    }
    v.push(format!("QMP command `{}`.", e.name));
    v
}

pub fn generate(cx: &Ctx) -> TokenStream {
    let mut infos = Vec::new();
    let mut methods = Vec::new();
    let mut arms = Vec::new();
    for (e, c) in cx.schema.commands() {
        if !cx.enabled(&e.cond) {
            continue;
        }
        let name = e.name.as_str();
        let (allow_oob, allow_preconfig, success_response, coroutine) = (
            c.allow_oob,
            c.allow_preconfig,
            c.success_response,
            c.coroutine,
        );
        let features: Vec<&str> = e
            .features
            .iter()
            .filter(|f| cx.enabled(&f.cond))
            .map(|f| f.name.as_str())
            .collect();
        infos.push(quote! {
            CommandFlags {
                name: #name,
                allow_oob: #allow_oob,
                allow_preconfig: #allow_preconfig,
                success_response: #success_response,
                coroutine: #coroutine,
                features: &[#(#features),*],
            },
        });
        if !c.gen {
            continue;
        }
        let method = ident(&snake(name));
        let docs = cx.doc_attrs(&command_doc(e));
        let ret = match &c.returns {
            Some(t) => cx.rust_type("", t),
            None => quote!(()),
        };
        // An implicit type with no members is no argument at all.
        let args_ty = c
            .args
            .as_deref()
            .filter(|a| !cx.members(a).is_empty() || !a.starts_with("q_obj_"));
        let to_value = match &c.returns {
            Some(_) => quote!(crate::ser::to_return(&r)),
            None => quote!({
                let () = r;
                ::std::result::Result::Ok(::serde_json::Value::Object(::serde_json::Map::new()))
            }),
        };
        match args_ty {
            Some(a) => {
                let at = cx.rust_type_name(a);
                methods.push(quote! {
                    #docs
                    fn #method(&self, cx: &Self::Context, args: #at) -> impl ::std::future::Future<Output = ::std::result::Result<#ret, crate::QmpError>> + Send {
                        let _ = (cx, args);
                        async { ::std::result::Result::Err(crate::QmpError::not_implemented(#name)) }
                    }
                });
                arms.push(quote! {
                    #name => match <#at as crate::visit::Visit>::visit(args, &root) {
                        ::std::result::Result::Err(e) => ::std::result::Result::Err(e.into()),
                        ::std::result::Result::Ok(a) => match h.#method(cx, a).await {
                            ::std::result::Result::Ok(r) => #to_value,
                            ::std::result::Result::Err(e) => ::std::result::Result::Err(e),
                        },
                    },
                });
            }
            None => {
                methods.push(quote! {
                    #docs
                    fn #method(&self, cx: &Self::Context) -> impl ::std::future::Future<Output = ::std::result::Result<#ret, crate::QmpError>> + Send {
                        let _ = cx;
                        async { ::std::result::Result::Err(crate::QmpError::not_implemented(#name)) }
                    }
                });
                arms.push(quote! {
                    #name => match crate::visit::no_arguments(args, &root) {
                        ::std::result::Result::Err(e) => ::std::result::Result::Err(e.into()),
                        ::std::result::Result::Ok(()) => match h.#method(cx).await {
                            ::std::result::Result::Ok(r) => #to_value,
                            ::std::result::Result::Err(e) => ::std::result::Result::Err(e),
                        },
                    },
                });
            }
        }
    }
    quote! {
        #[allow(unused_imports)]
        use crate::types::*;

        /// What the dispatcher and the monitor need to know about a command.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct CommandFlags {
            pub name: &'static str,
            /// May be executed out-of-band (`exec-oob`).
            pub allow_oob: bool,
            pub allow_preconfig: bool,
            /// False for commands that send no reply on success.
            pub success_response: bool,
            pub coroutine: bool,
            /// Features of the command (e.g. `deprecated`, `unstable`).
            pub features: &'static [&'static str],
        }

        /// Every command of the schema that is enabled in this build, in
        /// schema order.
        pub const COMMANDS: &[CommandFlags] = &[#(#infos)*];

        /// The command named `name`.
        pub fn command_flags(name: &str) -> ::std::option::Option<&'static CommandFlags> {
            COMMANDS.iter().find(|c| c.name == name)
        }

        /// The commands of the schema. The runtime implements the ones it
        /// supports; the default of every method answers a `GenericError`
        /// saying the command is not implemented yet. Arguments have already
        /// been checked against the schema when a method is called.
        pub trait Commands: Send + Sync {
            /// Per-call context (for example, which monitor sent the command).
            type Context: Send + Sync;

            #(#methods)*
        }

        /// Checks `args` against command `name`'s argument type and runs it.
        /// Returns `None` when there is no such command.
        pub async fn dispatch<C: Commands>(
            h: &C,
            cx: &C::Context,
            name: &str,
            args: &::serde_json::Value,
        ) -> ::std::option::Option<::std::result::Result<::serde_json::Value, crate::QmpError>> {
            let root = crate::visit::Path::root(crate::visit::Mode::Json);
            ::std::option::Option::Some(match name {
                #(#arms)*
                _ => return ::std::option::Option::None,
            })
        }
    }
}
