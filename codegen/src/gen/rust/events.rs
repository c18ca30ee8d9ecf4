//! The `Event` enum: one variant per event, carrying its data.

use proc_macro2::TokenStream;
use quote::quote;

use super::names::{camel, ident};
use super::Ctx;

pub fn generate(cx: &Ctx) -> TokenStream {
    let mut variants = Vec::new();
    let mut name_arms = Vec::new();
    let mut data_arms = Vec::new();
    let mut names = Vec::new();
    for (e, ev) in cx.schema.events() {
        if !cx.enabled(&e.cond) {
            continue;
        }
        let wire = e.name.as_str();
        let v = ident(&camel(wire));
        let mut doc: Vec<String> = e.doc.as_ref().map(|d| d.body.clone()).unwrap_or_default();
        doc.push(format!("QMP event `{wire}`."));
        let docs = cx.doc_attrs(&doc);
        names.push(wire);
        match &ev.args {
            Some(a) => {
                let t = cx.rust_type_name(a);
                variants.push(quote!(#docs #v(#t),));
                name_arms.push(quote!(Event::#v(_) => #wire,));
                data_arms.push(quote!(Event::#v(d) => ::serde_json::to_value(d).ok(),));
            }
            None => {
                variants.push(quote!(#docs #v,));
                name_arms.push(quote!(Event::#v => #wire,));
                data_arms.push(quote!(Event::#v => ::std::option::Option::None,));
            }
        }
    }
    quote! {
        #[allow(unused_imports)]
        use crate::types::*;

        /// Names of every event enabled in this build, in schema order.
        pub const EVENTS: &[&str] = &[#(#names),*];

        /// An event with its data, ready to be sent to every monitor.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Event {
            #(#variants)*
        }

        impl Event {
            /// The event name as sent on the wire.
            pub fn name(&self) -> &'static str {
                match self { #(#name_arms)* }
            }

            /// The `data` member, if the event has one.
            pub fn data(&self) -> ::std::option::Option<::serde_json::Value> {
                match self { #(#data_arms)* }
            }
        }
    }
}
