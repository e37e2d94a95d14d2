# Bahasha inayochapishwa, Kiswahili. Huchapishwa kwa WinAnsi (Latin-1).
#
# Msamiati:
#   envelope   bahasha (kadi hii ya mistari na gridi)
#   row        mstari; "cross out" = kata mstari
#   TAN        msimbo wa tarakimu 3 wa mstari
#   checksum   tarakimu 6 za ukaguzi (SUM kwenye jumbe)
#   add-to-amount, minus   nyongeza, punguzo (safu za taarifa ya mpokeaji)

envelope-fold = kunja hapa - upande uliochapishwa wa ukurasa mwingine uangalie ndani
envelope-title = { $operator } - bahasha ya malipo kwa SMS
envelope-number-label = Namba ya bahasha (EUIN)
envelope-rows-inside = Mistari { $rows } ndani. Haina thamani hadi isajiliwe kwenye akaunti.
envelope-register = Kusajili: tuma  REG { $euin } <bahasha ya sasa> <mstari> <TAN>
envelope-register-to = kwa { $number } (wakala husajili bahasha yako ya kwanza).
envelope-seal = Usipokee bahasha hii kama muhuri wake umevunjika.
envelope-secret = Bahasha { $euin } - SIRI. Kata kila mstari baada ya kuutumia.
envelope-rows-header = mst g nyongeza        TAN punguzo SUM: kanuni
envelope-howto-1 = Chini (malipo madogo):  PAY <bahasha> <mpokeaji> <kiasi> <mstari> <SUM>. SUM: vipengele sita vya mstari; LS = tarakimu kabla
envelope-howto-2 = ya nukta, Ak = tarakimu ya k ya mpokeaji kutoka kulia, Sk = tarakimu ya k ya kiasi kutoka kushoto, T = jumla ya tarakimu zote
envelope-howto-3 = za kiasi; ongeza namba baada ya +, chukua tarakimu ya mwisho.   Kati:  PAYG <bahasha> <mstari> <mpokeaji: tarakimu 2 za kwanza,
envelope-howto-4 = kisha kwa kila moja ya 10 za mwisho msimbo wake kwenye gridi ya mstari> <kiasi + nyongeza> <msimbo wa ukubwa kwenye gridi> <SUM ya mstari>.
envelope-howto-5 = Juu: vivyo hivyo kwa PAYC; benki inarudisha ujumbe pamoja na mstari wa benki, TAN yake na SUM (ihakiki); kama ni sahihi, tuma
envelope-howto-6 = OK <bahasha> <mstari wa benki> <TAN ya benki> <mstari wako unaofuata> <SUM ya mstari huo kwa mpokeaji na kiasi unachokusudia>.
envelope-howto-7 = Mipangilio (LIMIT, DIALBACK, HIGH, PASSWORD, DISPUTE, LUGHA) na REG huishia na <mstari> <SUM ya mstari huo kwa namba ya mpangilio>.
envelope-howto-8 = Jibu la benki huonyesha mstari na TAN yake (au SUM) kila wakati: lihakiki kwenye kadi hii, kisha kata mstari huo.
envelope-howto-9 = Usimwambie mtu yeyote namba hizi. Hifadhi mstari wa mwisho kusajili bahasha yako ijayo (REG).
