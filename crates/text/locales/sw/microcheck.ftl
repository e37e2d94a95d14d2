# Skrini ya mashine ya kuuza na majibu kwa mlipaji, Kiswahili.
#
# Msamiati:
#   microcheck   malipo yaliyosainiwa ambayo kifaa cha mlipaji hukabidhi mashine (jina hili hubaki)
#   selection    bidhaa iliyochaguliwa

microcheck-welcome = Mashine ya KeyNote * Chagua bidhaa *
microcheck-stock-line = { "  " }[{ $item }] { $product } { $price } (zimebaki { $count })
microcheck-deposited = imewekwa: { $text }
microcheck-offline = nje ya mtandao ({ $message }); microcheck { $nonce } imehifadhiwa kwa baadaye
microcheck-link-closed = muunganisho umekatika: { $message }
microcheck-another = Tafadhali chagua bidhaa nyingine
microcheck-refused = imekataliwa: { $refusal }
microcheck-buying = Unanunua { $product } kwa { $amount } { $currency } * Elekeza kifaa chako *
microcheck-declined-by-payer = mlipaji amekataa
microcheck-dispensing = Inatoa { $product } * Karibu tena *
microcheck-paid = umelipa { $amount } { $currency } kwa { $product } (microcheck { $nonce })
microcheck-refused-code = imekataliwa: { $reason } [{ $code }]
microcheck-declined = umekataa
