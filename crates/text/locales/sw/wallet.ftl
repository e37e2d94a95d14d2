# Jumbe za pochi ya kifaa, Kiswahili.
#
# Msamiati:
#   buyer, seller   mnunuzi, muuzaji
#   held            kiasi kilichozuiliwa kwa malipo, bado hakijatumika
#   sync            kuunganisha na ofisi ya fedha (sawazisha)
#   money office    ofisi ya fedha ya mtoa huduma

wallet-buyer-answered = mnunuzi { $buyer } amejibu
wallet-price-offered = muuzaji { $seller } anaomba { $amount }
wallet-received = imelipwa: umepokea { $amount }
wallet-paid = imelipwa: umelipa { $amount }
wallet-cancelled = imeghairiwa: hakuna pesa iliyohamishwa
wallet-awaiting = malipo { $transfer }: muuzaji amenyamaza baada ya wewe kukubali. Kiasi kinabaki kimezuiliwa (hakijatumika) hadi simu ya muuzaji ijibu, au ofisi ya fedha iamue kutoka kwa kumbukumbu za muuzaji wakati wa kusawazisha; simu ya muuzaji ikizuiwa, ofisi inaghairi malipo unaposawazisha kwa mara ya kwanza siku moja baada ya kuzuiwa
wallet-refused = malipo yamekataliwa: { $reason }
wallet-charged = umetozwa { $amount }
wallet-unknown-event = kimetokea kitu ambacho toleo hili la offpay haliwezi kueleza
wallet-reason-declined = yamekataliwa, au hayakujibiwa kwa wakati
wallet-reason-insufficient-funds = salio la pochi halitoshi
wallet-reason-limit-exceeded = yangevuka kikomo cha pochi (malipo makubwa zaidi, au jumla kati ya masawazisho mawili); sawazisha kwanza
wallet-reason-unknown-transfer = pochi haiyajui malipo haya
wallet-reason-seller-voided = muuzaji ameyaghairi
