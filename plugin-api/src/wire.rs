//! The wire form of the plugin messages, derived once from the message enums.
//!
//! Contract:
//! - [`plugin_messages!`] declares a request enum and its answer enum from one list of
//!   methods. Each method is one entry: its wire name, the request variant with its
//!   parameters, and the answer variant. From it come the serde form (`{"method": "<name>",
//!   "params": …}` for a request, `{"response": "<name>", "result": …}` for an answer, with
//!   an `Error` answer added), `METHODS`, `method()`, `encode_params()` and `decode()`. No
//!   method name, encoder or decoder is written anywhere else, so a new method is one entry
//!   here (and the trait method that answers it).
//! - Over the C ABI a request travels as its method name and its parameters:
//!   [`encode_params`](crate::messages::PluginRequest::encode_params) gives the parameters in
//!   exactly the bytes serde writes inside the tagged form (`null` for a method without
//!   parameters), and `decode` joins the two halves again and lets the derived `Deserialize`
//!   read them. `plugin-api/tests/wire.rs` pins these bytes per plugin API version.
//! - `decode` tells a method this side does not know ([`DecodeError::UnknownMethod`]) from
//!   parameters that do not fit it ([`DecodeError::BadParams`]): the plugin SDK answers the
//!   first with the fault code `unknown_method`, which the host reads as "not offered".

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request that could not be decoded from its method name and parameters.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "unknown method {0:?} (this side speaks plugin API {api})",
        api = crate::PLUGIN_API_VERSION
    )]
    UnknownMethod(String),
    #[error("parameters of {method:?} do not decode: {source}")]
    BadParams {
        method: String,
        source: serde_json::Error,
    },
}

/// The tag and content keys of every request enum (the `#[serde]` attribute
/// [`plugin_messages!`] puts on it).
const REQUEST_TAG: &str = "method";
const REQUEST_CONTENT: &str = "params";

/// Joins a method name and its JSON parameters into the request `T` (whose variants are
/// `methods`). Empty parameters read as `null`, as for a method that takes none.
pub(crate) fn decode<T: DeserializeOwned>(
    methods: &[&str],
    method: &str,
    params: &[u8],
) -> Result<T, DecodeError> {
    if !methods.contains(&method) {
        return Err(DecodeError::UnknownMethod(method.to_owned()));
    }
    let bad = |source| DecodeError::BadParams {
        method: method.to_owned(),
        source,
    };
    let params: Value = if params.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(params).map_err(bad)?
    };
    let mut tagged = serde_json::Map::new();
    tagged.insert(REQUEST_TAG.to_owned(), Value::String(method.to_owned()));
    tagged.insert(REQUEST_CONTENT.to_owned(), params);
    serde_json::from_value(Value::Object(tagged)).map_err(bad)
}

/// The parameters of one request variant as JSON bytes, exactly as serde writes them inside
/// the tagged form: `null` for none, the value of a one-field (newtype) variant, and the
/// fields of a struct variant as an object in their declared order, with their serde
/// attributes.
macro_rules! encode_params {
    () => {
        ::std::result::Result::Ok(b"null".to_vec())
    };
    (newtype $params:ident) => {
        ::serde_json::to_vec($params)
    };
    (struct { $( $(#[$meta:meta])* $field:ident : $ty:ty ),* }) => {{
        // A borrowed copy of the variant's fields: serde writes a struct variant's content
        // as it writes a struct with the same fields and attributes.
        #[derive(::serde::Serialize)]
        struct Params<'a> {
            $( $(#[$meta])* $field: &'a $ty, )*
        }
        ::serde_json::to_vec(&Params { $($field),* })
    }};
}
pub(crate) use encode_params;

/// Declares a request enum and its answer enum from one list of methods:
///
/// ```text
/// plugin_messages! {
///     /// Docs and derives of the request enum.
///     #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
///     pub enum PluginRequest;
///     /// Docs and derives of the answer enum.
///     #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
///     pub enum PluginResponse;
///     /// Answers any request that could not be carried out.
///     error Error(PluginError);
///
///     /// What the request asks (the request variant's docs).
///     "issue" => Issue(order: OrderContext)
///         /// What the answer says (added to the answer variant's docs).
///         -> Issue(IssueOutcome);
///     "now" => Now -> Now { unix_seconds: i64 };
///     "state_get" => StateGet { key: String } -> StateGet { value: Option<Value> };
/// }
/// ```
///
/// A request variant is a unit (no parameters: `null` on the wire), one named value
/// (`Issue(order: OrderContext)`: the name is only for the generated encoder), or a struct;
/// fields may carry serde attributes. The answer variant is any enum variant.
macro_rules! plugin_messages {
    (
        $(#[$request_meta:meta])*
        $vis:vis enum $Request:ident;
        $(#[$response_meta:meta])*
        $rvis:vis enum $Response:ident;
        $(#[$error_meta:meta])*
        error $Error:ident ( $ErrorTy:ty );
        $(
            $(#[$doc:meta])*
            $name:literal => $Variant:ident
                $( ( $param:ident : $ParamTy:ty ) )?
                $( { $( $(#[$field_meta:meta])* $field:ident : $FieldTy:ty ),* $(,)? } )?
            $(#[$answer_doc:meta])*
            -> $Answer:ident $( ( $($answer_tuple:tt)* ) )? $( { $($answer_fields:tt)* } )? ;
        )*
    ) => {
        $(#[$request_meta])*
        #[serde(tag = "method", content = "params")]
        $vis enum $Request {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $Variant
                    $( ($ParamTy) )?
                    $( { $( $(#[$field_meta])* $field: $FieldTy ),* } )?,
            )*
        }

        $(#[$response_meta])*
        #[serde(tag = "response", content = "result")]
        $rvis enum $Response {
            $(
                #[doc = concat!("Answers [`", stringify!($Request), "::", stringify!($Variant), "`].")]
                $(#[$answer_doc])*
                #[serde(rename = $name)]
                $Answer $( ( $($answer_tuple)* ) )? $( { $($answer_fields)* } )?,
            )*
            $(#[$error_meta])*
            #[serde(rename = "error")]
            $Error($ErrorTy),
        }

        impl $Request {
            /// Every method name, in declaration order.
            pub const METHODS: &'static [&'static str] = &[$($name),*];

            /// The method name: the serde tag, and the name passed over the ABI.
            pub fn method(&self) -> &'static str {
                match self {
                    $( Self::$Variant { .. } => $name, )*
                }
            }

            /// The parameters as JSON, as passed over the ABI beside [`Self::method`]: the
            /// bytes serde writes as `params` in the tagged form (`null` for none).
            pub fn encode_params(&self) -> ::std::result::Result<Vec<u8>, ::serde_json::Error> {
                match self {
                    $(
                        Self::$Variant $( ($param) )? $( { $($field),* } )? => {
                            $crate::wire::encode_params!(
                                $( newtype $param )?
                                $( struct { $( $(#[$field_meta])* $field: $FieldTy ),* } )?
                            )
                        }
                    )*
                }
            }

            /// The request from a method name and its JSON parameters.
            pub fn decode(
                method: &str,
                params: &[u8],
            ) -> ::std::result::Result<$Request, $crate::messages::DecodeError> {
                $crate::wire::decode(Self::METHODS, method, params)
            }
        }

        impl $Response {
            /// The method this answers (`"error"` for the error answer).
            pub fn method(&self) -> &'static str {
                match self {
                    $( Self::$Answer { .. } => $name, )*
                    Self::$Error(_) => "error",
                }
            }
        }
    };
}
pub(crate) use plugin_messages;
